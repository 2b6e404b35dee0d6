/**
 * Per-connection limits that no single request handler owns: connections per
 * remote address, request rates (token buckets), the time a connection may
 * stay without joining, and the output a peer may leave unread. One timer
 * sweeps every connection once a second; every entry is freed when its
 * connection closes.
 */
import type { IncomingMessage } from 'node:http'
import debug from 'debug'
import { LIMITS_SWEEP_MS } from './constants.js'
import type { ClientAddresses } from './client-addresses.js'
import { onEngineConnection, terminate, unsentBytes } from './engine.js'
import { ERRORS, type PeerSocket, type SocketServer } from './protocol.js'
import type { Registry } from './registry.js'

const log = debug('rendezvous:limits')

export interface LimitsConfig {
  maxConnectionsPerIP: number
  maxJoinsPerSecond: number
  maxDialsPerSecond: number
  maxSignalsPerSecond: number
  joinTimeoutMS: number
  maxUnsentBytes: number
}

export type CloseReason = 'join timeout' | 'unsent output over the limit'

interface Bucket {
  tokens: number
  at: number
}

interface Tracked {
  socket: PeerSocket
  openedAt: number
  joins: Bucket
  dials: Bucket
  signals: Bucket
}

/** Refills at `rate` per second up to twice that; takes one token if there is one. */
function take (bucket: Bucket, rate: number, now: number): boolean {
  bucket.tokens = Math.min(2 * rate, bucket.tokens + rate * (now - bucket.at) / 1000)
  bucket.at = now
  if (bucket.tokens < 1) return false
  bucket.tokens--
  return true
}

export class Limits {
  private readonly byIP = new Map<string, number>()
  private readonly tracked = new Map<string, Tracked>()
  private sweeper: NodeJS.Timeout | undefined

  constructor (
    private readonly config: LimitsConfig,
    io: SocketServer,
    private readonly registry: Registry<PeerSocket>,
    private readonly clientAddresses: ClientAddresses,
    private readonly onClosed: (reason: CloseReason) => void = () => {}
  ) {
    // count Engine.IO connections from their start, so a handshake can be refused before Socket.IO sees it
    onEngineConnection(io, clientAddresses, (ip) => {
      this.byIP.set(ip, (this.byIP.get(ip) ?? 0) + 1)
    }, (ip) => {
      const left = (this.byIP.get(ip) ?? 1) - 1
      if (left === 0) this.byIP.delete(ip)
      else this.byIP.set(ip, left)
    })
  }

  /** Starts sweeping every connection once a second. */
  start (): void {
    this.sweeper ??= setInterval(() => { this.sweep() }, LIMITS_SWEEP_MS)
    this.sweeper.unref()
  }

  /** Remote addresses with open connections; for leak checks. */
  get addresses (): number {
    return this.byIP.size
  }

  /** Connections being tracked; for leak checks. */
  get connections (): number {
    return this.tracked.size
  }

  /** Why a new connection from `req` is refused, if it is. */
  refusal (req: IncomingMessage): string | undefined {
    if (this.config.maxConnectionsPerIP === 0) return undefined
    const ip = this.clientAddresses.of(req)
    return (this.byIP.get(ip) ?? 0) >= this.config.maxConnectionsPerIP ? ERRORS.TOO_MANY_CONNECTIONS : undefined
  }

  opened (socket: PeerSocket): void {
    const now = Date.now()
    this.tracked.set(socket.id, {
      socket,
      openedAt: now,
      joins: { tokens: 2 * this.config.maxJoinsPerSecond, at: now },
      dials: { tokens: 2 * this.config.maxDialsPerSecond, at: now },
      signals: { tokens: 2 * this.config.maxSignalsPerSecond, at: now }
    })
  }

  closed (socket: PeerSocket): void {
    this.tracked.delete(socket.id)
  }

  /** The connection holds no address any more: its join timeout starts again. */
  unjoined (socket: PeerSocket): void {
    const t = this.tracked.get(socket.id)
    if (t !== undefined) t.openedAt = Date.now()
  }

  allowJoin (socket: PeerSocket): boolean {
    const t = this.tracked.get(socket.id)
    return t === undefined || take(t.joins, this.config.maxJoinsPerSecond, Date.now())
  }

  allowDial (socket: PeerSocket): boolean {
    const t = this.tracked.get(socket.id)
    return t === undefined || take(t.dials, this.config.maxDialsPerSecond, Date.now())
  }

  allowSignal (socket: PeerSocket): boolean {
    const t = this.tracked.get(socket.id)
    return t === undefined || take(t.signals, this.config.maxSignalsPerSecond, Date.now())
  }

  stop (): void {
    clearInterval(this.sweeper)
    this.sweeper = undefined
    this.tracked.clear()
  }

  private close (t: Tracked, reason: CloseReason): void {
    log('[%s] disconnected: %s', t.socket.id, reason)
    this.tracked.delete(t.socket.id)
    this.onClosed(reason)
    // a peer that does not read would hold a graceful close open: drop its output
    terminate(t.socket)
  }

  private sweep (): void {
    const now = Date.now()
    const { joinTimeoutMS, maxUnsentBytes } = this.config
    for (const t of [...this.tracked.values()]) {
      if (joinTimeoutMS > 0 && now - t.openedAt > joinTimeoutMS && this.registry.addressesOf(t.socket.id) === undefined) {
        this.close(t, 'join timeout')
      } else if (unsentBytes(t.socket) > maxUnsentBytes) {
        this.close(t, 'unsent output over the limit')
      }
    }
  }
}
