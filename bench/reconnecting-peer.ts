/**
 * A joined peer that behaves like socket.io-client 2.x (what every
 * libp2p-websocket-star release uses) after a transport close: it reconnects
 * by itself and joins its same address again. A Socket.IO DISCONNECT from the
 * server is final to socket.io-client 2.x, so such a peer stays away.
 *
 * The herd's retry model, not socket.io-client's 1 s ±50 % backing off to 5 s:
 * the first attempt goes out as soon as the connection closed, and each
 * further one RETRY_MIN_MS…RETRY_MAX_MS (uniform) after the last failed, so
 * that the whole herd is back within a retry interval of the server listening.
 */
import { performance } from 'node:perf_hooks'
import { Eio3Client } from './eio3-client.js'
import { joinAddress, JoinError, PEER_TIMEOUT_MS } from './joins.js'

export const RETRY_MIN_MS = 100
export const RETRY_MAX_MS = 250

/** Socket.IO DISCONNECT, as Eio3Client names it: socket.io-client 2.x does not reconnect after it. */
const FINAL = 'disconnected by the server'

/** What one failed attempt was, as the herd counts it. */
export type AttemptError = 'port closed' | 'connect' | 'connect timeout' | 'join refused' | 'join timeout' | 'join cut'

/** Where a herd's peers report. */
export interface HerdLog {
  /** The connection this peer had joined on closed; `final`: it will not come back. */
  closed: (peer: ReconnectingPeer, reason: string, final: boolean) => void
  /** An attempt that started at `startedAt` (epoch ms) failed; the peer retries. */
  failed: (peer: ReconnectingPeer, startedAt: number, kind: AttemptError, message: string) => void
  /** The peer has joined its address again, through these stages. */
  joined: (peer: ReconnectingPeer, stages: RejoinStages) => void
}

/** A successful attempt's stages, in ms: TCP connect, then WebSocket upgrade and Engine.IO/socket.io open, then the join's answer. */
export interface RejoinStages { tcpMs: number, openMs: number, joinMs: number }

export class ReconnectingPeer {
  /** Connection attempts since it took over its first connection. */
  attempts = 0
  /** Epoch ms of its last successful join. */
  joinedAt: number | undefined
  private client: Eio3Client | undefined
  private retry: NodeJS.Timeout | undefined
  private stopped = false

  constructor (readonly address: string, private readonly port: number, private readonly log: HerdLog, joined: Eio3Client) {
    this.adopt(joined)
  }

  get connected (): boolean {
    return this.client?.connected === true
  }

  /** Stops reconnecting and drops the connection. */
  stop (): void {
    this.stopped = true
    clearTimeout(this.retry)
    this.client?.destroy()
  }

  private adopt (client: Eio3Client): void {
    this.client = client
    client.onClose = (reason) => {
      if (this.stopped || this.client !== client) return
      const final = reason === FINAL
      this.log.closed(this, reason, final)
      if (!final) this.attempt()
    }
  }

  private attempt (): void {
    if (this.stopped) return
    this.attempts++
    const startedAt = Date.now()
    const fail = (kind: AttemptError, message: string): void => {
      if (this.stopped) return
      this.log.failed(this, startedAt, kind, message)
      this.retry = setTimeout(() => { this.attempt() }, RETRY_MIN_MS + Math.random() * (RETRY_MAX_MS - RETRY_MIN_MS))
    }
    Eio3Client.connect({ port: this.port, timeoutMs: PEER_TIMEOUT_MS }).then(async (client) => {
      if (this.discardIfStopped(client)) return
      try {
        await joinAddress(client, this.address)
      } catch (err) {
        client.destroy()
        const message = (err as Error).message
        fail(err instanceof JoinError ? 'join refused' : message.startsWith('no answer') ? 'join timeout' : 'join cut', message)
        return
      }
      if (this.discardIfStopped(client)) return
      this.joinedAt = Date.now()
      this.adopt(client)
      const tcp = client.tcpConnectedAt ?? client.startedAt
      const open = client.connectedAt ?? tcp
      this.log.joined(this, { tcpMs: tcp - client.startedAt, openMs: open - tcp, joinMs: performance.now() - open })
    }, (err: unknown) => {
      const message = (err as Error).message
      fail(message.includes('ECONNREFUSED') ? 'port closed' : message.startsWith('connect timeout') ? 'connect timeout' : 'connect', message)
    })
  }

  /** stop() may come while an attempt connects or joins: then the attempt's client is dropped. */
  private discardIfStopped (client: Eio3Client): boolean {
    if (this.stopped) client.destroy()
    return this.stopped
  }
}
