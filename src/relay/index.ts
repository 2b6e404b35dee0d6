/**
 * The relay: the `ss-dial` handshake and the relayed streams of the
 * socket.io-pull-stream sub-protocol (PROTOCOL.md, "Relayed streams"). This
 * front is what the rest of the server calls; the work is done by
 *
 * - dial.ts: one dial's life, its timers and limits;
 * - parties.ts: each connection's stream tables and the dispatch of its
 *   stream events;
 * - backpressure.ts: holding senders back while their receiver is behind.
 *
 * In cluster mode the listener may be on another node: the dial stays with
 * the dialer's node, which sees the listener through a `RemoteListener`
 * (cluster/remote-listener.ts), and the listener's node relays its peer's
 * side of the streams as a proxy (cluster/proxy.ts).
 */
import debug from 'debug'
import { ListenerProxy } from '../cluster/proxy.js'
import { RemoteListeners, type Holder, type NodeLink } from '../cluster/remote-listener.js'
import { Flow } from '../engine.js'
import type { Metrics } from '../metrics.js'
import { ERRORS, EVENTS, STREAM_EVENT_PREFIX, type DialRequest, type PeerSocket } from '../protocol.js'
import type { Registry } from '../registry.js'
import { Backpressure, type WaterMarks } from './backpressure.js'
import { Dial, streamNames, type DialContext, type DialLimits } from './dial.js'
import { Parties, logIgnored, type Party } from './parties.js'

const log = debug('rendezvous:relay')

export interface RelayConfig extends DialLimits, WaterMarks {
  maxStreamsPerConnection: number
}

export interface RelayComponents {
  registry: Registry<PeerSocket>
  metrics: Pick<Metrics, 'dialAttempt' | 'dialAnswered' | 'relayed'>
  /** A local connection by id (for dials from other nodes). */
  connection: (id: string) => PeerSocket | undefined
  /** Cluster mode: the other nodes. */
  nodes?: NodeLink
}

export class Relay {
  private readonly parties: Parties
  private readonly backpressure: Backpressure
  private readonly context: DialContext
  /** Cluster mode: dials made here to connections on other nodes, and dials made there to connections here. */
  readonly remote: RemoteListeners | undefined
  readonly proxy: ListenerProxy | undefined
  private streamCount = 0
  private dialCount = 0
  private relayedBytes = 0
  /** What local connections relayed through parties since let go of; each entry goes with its connection. */
  private readonly relayedEarlier = new Map<string, number>()
  private draining = false
  private idle: Array<() => void> = []

  constructor (private readonly components: RelayComponents, private readonly config: RelayConfig) {
    this.backpressure = new Backpressure(config)
    this.parties = new Parties({
      queue: (stream, chunk) => { stream.dial.carry(stream, chunk) },
      end: (stream, end) => { stream.dial.endStream(stream, end) },
      accept: (stream) => { stream.dial.accept(stream) }
    }, (party) => { this.drained(party) }, (party) => this.proxy?.serves(party) === true, (party) => { this.removed(party) })
    this.context = {
      limits: config,
      backpressure: this.backpressure,
      answered: (success, startedAt) => { components.metrics.dialAnswered(success, startedAt) },
      delivered: (bytes) => { this.delivered(bytes) },
      streamOpened: () => { this.streamCount++ },
      streamClosed: () => { if (--this.streamCount === 0) this.becameIdle() },
      held: (stream, paused) => {
        if (paused) log('[%s] paused: [%s] is %d bytes behind', stream.sender.key, stream.receiver.key, stream.queued)
        else log('[%s] resumed', stream.sender.key)
      },
      over: (dial) => { this.over(dial) }
    }
    const { nodes } = components
    if (nodes !== undefined) {
      this.remote = new RemoteListeners(nodes, this.parties)
      this.proxy = new ListenerProxy({
        nodes,
        parties: this.parties,
        registry: components.registry,
        backpressure: this.backpressure,
        connection: components.connection,
        local: (socket) => this.local(socket),
        refusal: (party, dialId) => this.refusal(party, dialId),
        draining: () => this.draining,
        delivered: (bytes) => { this.delivered(bytes) }
      }, config)
    }
  }

  /** Relayed streams open now. */
  get streams (): number {
    return this.streamCount
  }

  /** Dials in progress or open now. */
  get dials (): number {
    return this.dialCount
  }

  /** Connections with relay state. */
  get connections (): number {
    return this.parties.size
  }

  /** Bytes delivered to receivers since start. */
  get bytesRelayed (): number {
    return this.relayedBytes
  }

  /** Bytes relayed to or from the local connection `id` since it connected. */
  relayedBytesOf (id: string): number {
    return (this.relayedEarlier.get(id) ?? 0) + (this.parties.get(id)?.relayed ?? 0)
  }

  /** Connections not read from now, held back by a congested receiver. */
  get pausedSenders (): number {
    let n = 0
    for (const party of this.parties.values()) if (party.endpoint.isPaused) n++
    return n
  }

  async dial (socket: PeerSocket, request: DialRequest): Promise<void> {
    const startedAt = process.hrtime.bigint()
    const { from, to, dialId, ack } = request
    const { metrics, registry } = this.components
    metrics.dialAttempt()
    const fail = (error: string): void => {
      log('[%s] dial %s from %s to %s refused: %s', socket.id, dialId, from, to, error)
      metrics.dialAnswered(false, startedAt)
      ack(error)
    }
    if (this.draining) { fail(ERRORS.SHUTTING_DOWN); return; }
    if (!registry.holds(socket, from)) { fail(ERRORS.NOT_AUTHORIZED); return; }
    const target = registry.holderOf(to) ?? await this.locate(to)
    // while the shared registry was asked, the dialer may have gone or left
    if (!socket.connected) return
    if (!registry.holds(socket, from)) { fail(ERRORS.NOT_AUTHORIZED); return; }
    if (target === undefined) { fail(ERRORS.PEER_NOT_FOUND); return; }

    const dialer = this.local(socket)
    const listener = 'node' in target ? (this.remote as RemoteListeners).party(target) : this.local(target)
    const refused = this.refusal(dialer, dialId) ?? this.refusal(listener, dialId)
    if (refused !== undefined) {
      this.parties.releaseIfIdle(dialer)
      this.parties.releaseIfIdle(listener)
      fail(refused); return;
    }
    const dial = new Dial({ id: dialId, from, to, ack, startedAt }, dialer, listener, this.context)
    this.dialCount++
    log('[%s] dial %s from %s to %s [%s]', socket.id, dialId, from, to, listener.key)
    const remote = this.remote?.listenerOf(dial)
    if (remote !== undefined) {
      if (!remote.offer(dial, this.config.dialTimeoutMS)) dial.end(true)
      return
    }
    // Socket.IO keeps an ack until it is answered: without a timeout, a
    // listener that never answers would keep every such dial, and through it
    // the dialer's connection, for as long as it stays connected
    ;(target as PeerSocket).timeout(this.config.dialTimeoutMS).emit(EVENTS.INCOMING, dialId, from, (err: Error | null, ...answer: unknown[]) => {
      if (err === null) dial.answer(answer[0])
    })
  }

  /** A `socket.io-pull-stream.*` event from `socket`. */
  onStreamEvent (socket: PeerSocket, event: string, args: unknown[]): void {
    const rest = event.slice(STREAM_EVENT_PREFIX.length)
    const dot = rest.indexOf('.')
    const party = this.parties.get(socket.id)
    if (dot < 0 || party === undefined) return logIgnored(socket.id, event)
    const type = rest.slice(0, dot)
    const name = rest.slice(dot + 1)
    if (this.proxy?.forward(party, type, name, args[0]) === true) return
    this.parties.dispatch(party, type, name, args[0])
  }

  /** `socket` no longer holds `address`: end the dials made from or to it. */
  addressReleased (socket: PeerSocket, address: string): void {
    const party = this.parties.get(socket.id)
    if (party === undefined) return
    for (const dial of [...party.dials]) {
      // still connected: both sides hear the end
      if ((dial.dialer === party && dial.from === address) || (dial.listener === party && dial.to === address)) dial.end(true)
    }
    this.proxy?.addressReleased(party, address)
  }

  /** The connection is gone: end every stream that touches it. */
  connectionClosed (socket: PeerSocket): void {
    const party = this.parties.get(socket.id)
    if (party !== undefined) this.gone(party)
    this.relayedEarlier.delete(socket.id)
  }

  /** A node is gone, or out of reach: end every stream shared with it. */
  nodeGone (node: string): void {
    for (const party of [...this.parties.values()]) {
      if (this.remote?.nodeOf(party) === node) this.gone(party)
    }
    this.proxy?.nodeGone(node)
  }

  /** Shutting down: open streams go on, new dials are refused. */
  drain (): void {
    this.draining = true
  }

  /** Resolves when no stream is open, or after `timeoutMs`. */
  async whenIdle (timeoutMs: number): Promise<void> {
    if (this.streamCount === 0 || timeoutMs <= 0) return
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
      this.idle.push(resolve)
    })
    clearTimeout(timer)
  }

  /** Ends every stream, telling both sides (they are still connected), and frees everything. */
  stop (): void {
    this.draining = true
    for (const party of [...this.parties.values()]) {
      for (const dial of [...party.dials]) dial.end(true)
    }
    this.proxy?.stop()
    for (const party of [...this.parties.values()]) this.parties.remove(party)
    this.relayedEarlier.clear()
  }

  private async locate (address: string): Promise<Holder | PeerSocket | undefined> {
    const nodes = this.components.nodes
    if (nodes === undefined) return undefined
    const holder = await nodes.locate(address).catch(() => undefined)
    // held here after all: the local registry knows better than a stale entry
    return holder?.node === nodes.node ? this.components.registry.holderOf(address) : holder
  }

  private local (socket: PeerSocket): Party {
    return this.parties.open(socket.id, (drained) => new Flow(socket, drained))
  }

  /**
   * Why `party` cannot take part in dial `dialId`: one of its stream names in
   * use on the connection, in either role or proxied for another node (it
   * would be ambiguous to that client), or the stream limit.
   */
  private refusal (party: Party, dialId: string): string | undefined {
    if (streamNames(dialId).some((name) => party.has(name) || this.proxy?.uses(party, name) === true)) return ERRORS.DIAL_ID_IN_USE
    if (party.streams + (this.proxy?.streamsOf(party) ?? 0) + 2 > this.config.maxStreamsPerConnection) return ERRORS.TOO_MANY_STREAMS
    return undefined
  }

  /** The party's peer is gone: its dials end on the other side only, and it is freed. */
  private gone (party: Party): void {
    for (const dial of [...party.dials]) dial.end(true, party)
    this.proxy?.connectionClosed(party)
    this.parties.remove(party)
  }

  private over (dial: Dial): void {
    this.remote?.listenerOf(dial)?.over(dial)
    this.dialCount--
    this.parties.releaseIfIdle(dial.dialer)
    this.parties.releaseIfIdle(dial.listener)
  }

  /** A party let go of: a connection still here keeps its count (parties of other nodes' connections are not counted). */
  private removed (party: Party): void {
    if (party.relayed === 0 || this.components.connection(party.key) === undefined) return
    this.relayedEarlier.set(party.key, (this.relayedEarlier.get(party.key) ?? 0) + party.relayed)
  }

  private drained (party: Party): void {
    this.backpressure.drained(party, (stream) => { this.context.held(stream, false) })
    this.proxy?.drained(party)
  }

  private delivered (bytes: number): void {
    this.relayedBytes += bytes
    this.components.metrics.relayed(bytes)
  }

  private becameIdle (): void {
    const idle = this.idle
    this.idle = []
    for (const resolve of idle) resolve()
  }
}
