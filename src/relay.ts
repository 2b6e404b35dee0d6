/**
 * The relay: the `ss-dial` handshake and the relayed streams of the
 * socket.io-pull-stream sub-protocol (PROTOCOL.md, "Relayed streams").
 *
 * A dial makes two streams: `<dialId>.dialer` from the dialer to the listener
 * and `<dialId>.listener` back. For each, the server is the receiver towards
 * the sender and the sender towards the receiver. Events are dispatched by
 * one map lookup on the connection they came from, in the role they must
 * play there: only a stream's sender can queue or end it, only its receiver
 * can accept it, so no other connection can touch it whatever name it sends.
 *
 * Memory is bounded by backpressure: when the bytes waiting for a receiver
 * pass the high-water mark, the server stops reading from the senders that
 * feed it until the receiver drains below the low-water mark.
 *
 * In cluster mode the listener may be on another node: the dial stays with
 * the dialer's node, which sees the listener through a `RemoteEndpoint`
 * (remote.ts), and the listener's node relays its peer's side of the streams
 * as a proxy (the "Listener's node" part below).
 */
import debug from 'debug'
import type { NodeMessage } from './cluster.js'
import { Flow } from './flow.js'
import type { Metrics } from './metrics.js'
import { ERRORS, EVENTS, STREAM_EVENT_PREFIX, type Ack, type DialRequest, type PeerSocket, type StreamEventName } from './protocol.js'
import type { Registry } from './registry.js'
import { MESSAGES, RemoteEndpoint, remoteKey, type NodeLink } from './remote.js'

const log = debug('rendezvous:relay')

export interface RelayConfig {
  dialTimeoutMS: number
  relayHighWaterBytes: number
  relayLowWaterBytes: number
  maxStreamsPerConnection: number
  /** Bytes one dial may relay, both directions together; 0: no limit. */
  maxRelayBytes: number
  /** How long one dial may stay open; 0: no limit. */
  maxRelayDurationMS: number
}

/** What ends a stream: `true` for a clean end, or an error message. */
type End = true | string

/** One side of relayed streams: a local connection's `Flow`, or a `RemoteEndpoint`. */
export interface Endpoint {
  readonly id: string
  /** Bytes written and not yet taken by the peer. */
  readonly backlog: number
  readonly isPaused: boolean
  emit: (event: StreamEventName, ...args: Array<true | string>) => void
  write: (event: StreamEventName, chunk: Buffer) => void
  pause: () => void
  resume: () => void
  close: () => void
}

/** Where to find a holder the local registry does not know (cluster mode). */
export interface Locator extends NodeLink {
  locate: (address: string) => Promise<{ node: string, connection: string } | undefined>
  /** Watch that node: its death must end what is shared with it. */
  watch: (node: string) => void
}

interface Stream {
  name: string
  dial: Dial
  sender: Link
  receiver: Link
  accepted: boolean
  /** Chunks held until the receiver accepts. */
  pending: Buffer[]
  pendingBytes: number
  /** The sender's end, delivered after `pending`. */
  end: End | undefined
  /** This stream's sender is paused on its account. */
  blocking: boolean
}

interface Dial {
  id: string
  from: string
  to: string
  dialer: Link
  listener: Link
  streams: Stream[]
  answered: boolean
  ack: Ack
  startedAt: bigint
  bytes: number
  timer: NodeJS.Timeout | undefined
}

/** Relay state of one connection. */
interface Link {
  key: string
  flow: Endpoint
  /** Set when the connection is on another node. */
  remote: RemoteEndpoint | undefined
  /** Streams this connection sends on, by name. */
  sending: Map<string, Stream>
  /** Streams this connection receives, by name. */
  receiving: Map<string, Stream>
  dials: Set<Dial>
  /** Streams from this connection held back by a congested receiver. */
  blockedBy: number
  /** Streams into this connection whose sender waits for it to drain. */
  waiting: Set<Stream>
  /** Dials to this (local) connection made on other nodes, by node. */
  origins: Map<string, Origin>
  /** Their stream names, with the node each belongs to. */
  proxied: Map<string, Proxied>
}

/** The dials one other node made to a local connection (the listener's node's view). */
interface Origin {
  node: string
  link: Link
  dials: Map<string, Proxied>
  /** Bytes forwarded to that node, and acknowledged by it. */
  forwarded: number
  received: number
  /** Bytes it wrote to the connection, and reported as delivered. */
  written: number
  reported: number
  reporting: NodeJS.Immediate | undefined
  /** The connection is paused: too much unacknowledged, or the node asked. */
  blocking: boolean
  pausedByNode: boolean
}

interface Proxied {
  origin: Origin
  dial: string
  /** The address the dial went to, held by the local connection. */
  to: string
}

/** The two streams of a dial: dialer → listener, and back. */
function streamNames (dialId: string): [forward: string, back: string] {
  return [`${dialId}.dialer`, `${dialId}.listener`]
}

/** How a sender's `error` event ends its stream: `true`, its message (bounded), or a generic error. */
function endOf (value: unknown): End {
  if (value === true) return true
  return typeof value === 'string' && value !== '' ? value.slice(0, 1024) : ERRORS.STREAM_ERROR
}

function streamEvent (type: 'accept' | 'queue' | 'error', name: string): StreamEventName {
  return `${STREAM_EVENT_PREFIX}${type}.${name}`
}

function chunkOf (value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value
  if (value instanceof ArrayBuffer) return Buffer.from(value)
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  return undefined
}

export class Relay {
  private readonly links = new Map<string, Link>()
  private streamCount = 0
  private dialCount = 0
  /** Bytes delivered to receivers since start. */
  bytesRelayed = 0
  /** Shutting down: open streams go on, new dials are refused. */
  draining = false
  /** Called each time the last open stream closes. */
  onIdle: () => void = () => {}

  /** Set in cluster mode. */
  cluster: Locator | undefined

  constructor (
    private readonly config: RelayConfig,
    private readonly registry: Registry<PeerSocket>,
    private readonly metrics: Metrics,
    /** A local connection by id (for dials from other nodes). */
    private readonly connection: (id: string) => PeerSocket | undefined = () => undefined
  ) {}

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
    return this.links.size
  }

  /** Connections not read from now, held back by a congested receiver. */
  get pausedSenders (): number {
    let n = 0
    for (const link of this.links.values()) if (link.flow.isPaused) n++
    return n
  }

  async dial (socket: PeerSocket, request: DialRequest): Promise<void> {
    const startedAt = process.hrtime.bigint()
    const { from, to, dialId, ack } = request
    this.metrics.dialAttempt()
    const fail = (error: string): void => {
      log('[%s] dial %s from %s to %s refused: %s', socket.id, dialId, from, to, error)
      this.metrics.dialAnswered(false, startedAt)
      ack(error)
    }
    if (this.draining) return fail(ERRORS.SHUTTING_DOWN)
    if (!this.registry.holds(socket, from)) return fail(ERRORS.NOT_AUTHORIZED)
    let target: PeerSocket | { node: string, connection: string } | undefined = this.registry.holderOf(to)
    if (target === undefined && this.cluster !== undefined) {
      target = await this.cluster.locate(to).catch(() => undefined)
      // while the registry was asked, the dialer may have gone or left
      if (!socket.connected) return
      if (!this.registry.holds(socket, from)) return fail(ERRORS.NOT_AUTHORIZED)
      // held here after all: the local registry knows better than a stale entry
      if (target?.node === this.cluster.node) target = this.registry.holderOf(to)
    }
    if (target === undefined) return fail(ERRORS.PEER_NOT_FOUND)

    const dialer = this.link(socket)
    const listener = 'node' in target ? this.remoteLink(target.node, target.connection) : this.link(target)
    const refused = this.refusal(dialer, dialId) ?? this.refusal(listener, dialId)
    if (refused !== undefined) {
      this.unlinkIfIdle(dialer)
      this.unlinkIfIdle(listener)
      return fail(refused)
    }

    const dial: Dial = { id: dialId, from, to, dialer, listener, streams: [], answered: false, ack, startedAt, bytes: 0, timer: undefined }
    this.dialCount++
    dialer.dials.add(dial)
    listener.dials.add(dial)
    dial.timer = setTimeout(() => { this.timedOut(dial) }, this.config.dialTimeoutMS)
    log('[%s] dial %s from %s to %s [%s]', socket.id, dialId, from, to, listener.key)

    // the server is the receiver of the dialer's stream: accept it now and
    // hold what comes until the listener accepts
    const [forward] = streamNames(dialId)
    this.open(dial, forward, dialer, listener)
    dialer.flow.emit(streamEvent('accept', forward))
    if (listener.remote !== undefined) {
      if (!listener.remote.incoming(dialId, from, to, this.config.dialTimeoutMS)) this.teardown(dial, true)
      return
    }
    // Socket.IO keeps an ack until it is answered: without a timeout, a
    // listener that never answers would keep every such dial, and through it
    // the dialer's connection, for as long as it stays connected
    ;(target as PeerSocket).timeout(this.config.dialTimeoutMS).emit(EVENTS.INCOMING, dialId, from, (err: Error | null, ...answer: unknown[]) => {
      if (err === null) this.answered(dial, answer[0])
    })
  }

  /**
   * Why `link` cannot take part in dial `dialId`: one of its stream names in
   * use on the connection, in either role or proxied for another node (it
   * would be ambiguous to that client), or the stream limit.
   */
  private refusal (link: Link, dialId: string): string | undefined {
    if (streamNames(dialId).some((name) => link.sending.has(name) || link.receiving.has(name) || link.proxied.has(name))) return ERRORS.DIAL_ID_IN_USE
    if (link.sending.size + link.receiving.size + link.proxied.size + 2 > this.config.maxStreamsPerConnection) return ERRORS.TOO_MANY_STREAMS
    return undefined
  }

  /** A `socket.io-pull-stream.*` event from `socket`. */
  onStreamEvent (socket: PeerSocket, event: string, args: unknown[]): void {
    const rest = event.slice(STREAM_EVENT_PREFIX.length)
    const dot = rest.indexOf('.')
    const link = this.links.get(socket.id)
    if (dot < 0 || link === undefined) return this.ignored(socket.id, event)
    const type = rest.slice(0, dot)
    const name = rest.slice(dot + 1)
    const proxied = link.proxied.get(name)
    if (proxied !== undefined) return this.forward(proxied, type, name, args[0])
    this.streamEvent(link, type, name, args[0])
  }

  private streamEvent (link: Link, type: string, name: string, value: unknown): void {
    switch (type) {
      case 'queue': {
        const stream = link.sending.get(name)
        if (stream === undefined || stream.end !== undefined) return this.ignored(link.key, type, name)
        const chunk = chunkOf(value)
        if (chunk === undefined) {
          log('[%s] stream %s: chunk is not binary, ending it', link.key, name)
          this.finish(stream, ERRORS.INVALID_CHUNK)
          return
        }
        this.data(stream, chunk)
        return
      }
      case 'error': {
        const stream = link.sending.get(name)
        if (stream === undefined || stream.end !== undefined) return this.ignored(link.key, type, name)
        this.finish(stream, endOf(value))
        return
      }
      case 'accept': {
        const stream = link.receiving.get(name)
        if (stream === undefined || stream.accepted) return this.ignored(link.key, type, name)
        this.accepted(stream)
        return
      }
      default:
        this.ignored(link.key, type, name)
    }
  }

  /** `socket` no longer holds `address`: end the dials made from or to it. */
  addressReleased (socket: PeerSocket, address: string): void {
    const link = this.links.get(socket.id)
    if (link === undefined) return
    for (const dial of [...link.dials]) {
      // still connected: both sides hear the end
      if ((dial.dialer === link && dial.from === address) || (dial.listener === link && dial.to === address)) {
        this.teardown(dial, true)
      }
    }
    for (const origin of [...link.origins.values()]) {
      for (const proxied of [...origin.dials.values()]) {
        if (proxied.to === address) this.unproxy(proxied, true, true)
      }
    }
  }

  /** The connection is gone: end every stream that touches it. */
  connectionClosed (socket: PeerSocket): void {
    const link = this.links.get(socket.id)
    if (link === undefined) return
    this.unlink(link)
  }

  /** A node is gone, or out of reach: end every stream shared with it. */
  nodeGone (node: string): void {
    for (const link of [...this.links.values()]) {
      if (link.remote?.node === node) this.unlink(link)
      const origin = link.origins.get(node)
      if (origin !== undefined) {
        for (const proxied of [...origin.dials.values()]) this.unproxy(proxied, true, false)
      }
    }
  }

  /** Ends every stream, telling both sides (they are still connected), and frees everything. */
  stop (): void {
    for (const link of [...this.links.values()]) {
      for (const dial of [...link.dials]) this.teardown(dial, true)
      for (const origin of [...link.origins.values()]) {
        for (const proxied of [...origin.dials.values()]) this.unproxy(proxied, true, true)
      }
      link.flow.close()
      this.links.delete(link.key)
    }
  }

  /** Ends every stream of a link whose peer is gone, and frees it. */
  private unlink (link: Link): void {
    for (const dial of [...link.dials]) this.teardown(dial, true, link)
    for (const origin of [...link.origins.values()]) {
      for (const proxied of [...origin.dials.values()]) this.unproxy(proxied, false, true)
    }
    link.flow.close()
    this.links.delete(link.key)
  }

  private link (socket: PeerSocket): Link {
    return this.links.get(socket.id) ?? this.addLink(socket.id, (drained) => new Flow(socket, drained))
  }

  private remoteLink (node: string, connection: string): Link {
    const key = remoteKey(node, connection)
    const existing = this.links.get(key)
    if (existing !== undefined) return existing
    const cluster = this.cluster as Locator
    cluster.watch(node)
    return this.addLink(key, (drained) => new RemoteEndpoint(cluster, node, connection, drained))
  }

  /** A link whose endpoint is made by `endpoint`, which is given the link's drain callback. */
  private addLink (key: string, endpoint: (drained: () => void) => Endpoint): Link {
    const link: Link = {
      key,
      flow: undefined as unknown as Endpoint,
      remote: undefined,
      sending: new Map(),
      receiving: new Map(),
      dials: new Set(),
      blockedBy: 0,
      waiting: new Set(),
      origins: new Map(),
      proxied: new Map()
    }
    link.flow = endpoint(() => { this.drained(link) })
    if (link.flow instanceof RemoteEndpoint) link.remote = link.flow
    this.links.set(key, link)
    return link
  }

  private unlinkIfIdle (link: Link): void {
    if (link.dials.size > 0 || link.origins.size > 0) return
    link.flow.close()
    this.links.delete(link.key)
  }

  private open (dial: Dial, name: string, sender: Link, receiver: Link): Stream {
    const stream: Stream = { name, dial, sender, receiver, accepted: false, pending: [], pendingBytes: 0, end: undefined, blocking: false }
    dial.streams.push(stream)
    sender.sending.set(name, stream)
    receiver.receiving.set(name, stream)
    this.streamCount++
    return stream
  }

  private answered (dial: Dial, error: unknown): void {
    if (dial.answered || !dial.dialer.dials.has(dial)) return
    dial.answered = true
    if (error !== undefined && error !== null && error !== false && error !== '') {
      const message = typeof error === 'string' ? error.slice(0, 1024) : ERRORS.DIAL_REFUSED
      log('dial %s refused by the listener: %s', dial.id, message)
      this.metrics.dialAnswered(false, dial.startedAt)
      dial.ack(message)
      this.teardown(dial, true)
      return
    }
    const back = this.open(dial, streamNames(dial.id)[1], dial.listener, dial.dialer)
    dial.listener.flow.emit(streamEvent('accept', back.name))
    this.metrics.dialAnswered(true, dial.startedAt)
    log('dial %s answered', dial.id)
    // the old server answered with no arguments at all
    ;(dial.ack as () => void)()
    this.maybeEstablished(dial)
  }

  private timedOut (dial: Dial): void {
    dial.timer = undefined
    if (!dial.answered) {
      dial.answered = true
      log('dial %s: listener did not answer in time', dial.id)
      this.metrics.dialAnswered(false, dial.startedAt)
      dial.ack(ERRORS.DIAL_TIMEOUT)
    } else {
      log('dial %s: a stream was not accepted in time', dial.id)
    }
    this.teardown(dial, ERRORS.DIAL_TIMEOUT)
  }

  /** Both streams accepted: the dial timeout gives way to the duration limit. */
  private maybeEstablished (dial: Dial): void {
    if (dial.streams.length < 2 || !dial.streams.every((s) => s.accepted)) return
    if (dial.timer !== undefined) clearTimeout(dial.timer)
    dial.timer = undefined
    if (this.config.maxRelayDurationMS > 0) {
      dial.timer = setTimeout(() => {
        dial.timer = undefined
        log('dial %s reached the duration limit', dial.id)
        this.teardown(dial, ERRORS.RELAY_DURATION_LIMIT)
      }, this.config.maxRelayDurationMS)
    }
  }

  private accepted (stream: Stream): void {
    stream.accepted = true
    const { pending } = stream
    stream.pending = []
    stream.pendingBytes = 0
    for (const chunk of pending) this.deliver(stream, chunk)
    // held back before the accept: go on once what was held has drained
    if (stream.blocking && stream.receiver.flow.backlog <= this.config.relayLowWaterBytes) this.unblock(stream)
    const dial = stream.dial
    if (stream.end !== undefined) this.deliverEnd(stream)
    else this.checkPressure(stream)
    this.maybeEstablished(dial)
  }

  private data (stream: Stream, chunk: Buffer): void {
    const dial = stream.dial
    dial.bytes += chunk.length
    if (this.config.maxRelayBytes > 0 && dial.bytes > this.config.maxRelayBytes) {
      log('dial %s reached the data limit', dial.id)
      this.teardown(dial, ERRORS.RELAY_DATA_LIMIT)
      return
    }
    if (stream.accepted) {
      this.deliver(stream, chunk)
    } else {
      stream.pending.push(chunk)
      stream.pendingBytes += chunk.length
    }
    this.checkPressure(stream)
  }

  private deliver (stream: Stream, chunk: Buffer): void {
    stream.receiver.flow.write(streamEvent('queue', stream.name), chunk)
    this.bytesRelayed += chunk.length
    this.metrics.relayed(chunk.length)
  }

  private finish (stream: Stream, end: End): void {
    stream.end = end
    if (stream.accepted) this.deliverEnd(stream)
  }

  private deliverEnd (stream: Stream): void {
    stream.receiver.flow.emit(streamEvent('error', stream.name), stream.end as End)
    this.close(stream)
    const dial = stream.dial
    if (dial.answered && dial.streams.length === 0) this.forgetDial(dial)
  }

  /** Whether the receiver's backlog, or what waits for its accept, should hold the sender back. */
  private checkPressure (stream: Stream): void {
    const queued = stream.accepted ? stream.receiver.flow.backlog : stream.pendingBytes
    if (stream.blocking || queued <= this.config.relayHighWaterBytes) return
    stream.blocking = true
    stream.receiver.waiting.add(stream)
    if (this.pauseFor(stream.sender)) log('[%s] paused: [%s] is %d bytes behind', stream.sender.key, stream.receiver.key, queued)
  }

  /** Output to `link` may have drained: let the senders it held back go on. */
  private drained (link: Link): void {
    if (link.flow.backlog > this.config.relayLowWaterBytes) return
    for (const origin of link.origins.values()) this.reportDelivered(origin)
    if (link.waiting.size === 0) return
    for (const stream of [...link.waiting]) {
      if (stream.accepted) this.unblock(stream)
    }
  }

  private unblock (stream: Stream): void {
    if (!stream.blocking) return
    stream.blocking = false
    stream.receiver.waiting.delete(stream)
    if (this.resumeFor(stream.sender)) log('[%s] resumed', stream.sender.key)
  }

  /** Frees one stream's state. */
  private close (stream: Stream): void {
    this.unblock(stream)
    stream.pending = []
    stream.pendingBytes = 0
    stream.sender.sending.delete(stream.name)
    stream.receiver.receiving.delete(stream.name)
    const dial = stream.dial
    const at = dial.streams.indexOf(stream)
    if (at >= 0) {
      dial.streams.splice(at, 1)
      if (--this.streamCount === 0) this.onIdle()
    }
  }

  /**
   * Ends a whole dial: every stream still open ends with `end` on each side
   * still connected (`gone` is a side that is not).
   */
  private teardown (dial: Dial, end: End, gone?: Link): void {
    if (!dial.answered) {
      dial.answered = true
      this.metrics.dialAnswered(false, dial.startedAt)
      dial.ack(ERRORS.PEER_NOT_FOUND)
    }
    for (const stream of [...dial.streams]) {
      for (const side of [stream.receiver, stream.sender]) {
        if (side !== gone) side.flow.emit(streamEvent('error', stream.name), end)
      }
      this.close(stream)
    }
    this.forgetDial(dial)
  }

  private forgetDial (dial: Dial): void {
    if (dial.timer !== undefined) clearTimeout(dial.timer)
    dial.timer = undefined
    if (!dial.dialer.dials.delete(dial)) return
    dial.listener.dials.delete(dial)
    dial.listener.remote?.end(dial.id)
    this.dialCount--
    log('dial %s over', dial.id)
    this.unlinkIfIdle(dial.dialer)
    this.unlinkIfIdle(dial.listener)
  }

  private ignored (connection: string, event: string, name = ''): void {
    log('[%s] ignored %s%s: no such stream on this connection in that role', connection, event.slice(0, 200), name === '' ? '' : ` ${name.slice(0, 200)}`)
  }

  // -- Listener's node: dials made on other nodes to a local connection -----

  /** A message from another node's relay. */
  onNodeMessage (from: string, { header, payload }: NodeMessage): void {
    const sid = typeof header.sid === 'string' ? header.sid : ''
    const dial = typeof header.dial === 'string' ? header.dial : ''
    switch (header.t) {
      // the dialer's node speaks to the listener's
      case MESSAGES.INCOMING: return this.incoming(from, sid, dial, header)
      case MESSAGES.EMIT: {
        const link = this.links.get(sid)
        const event = header.event
        if (link === undefined || link.remote !== undefined || typeof event !== 'string' || !link.origins.has(from)) return
        const value = header.value
        if (value === true || typeof value === 'string') link.flow.emit(event as StreamEventName, value)
        else link.flow.emit(event as StreamEventName)
        return
      }
      case MESSAGES.WRITE: {
        const link = this.links.get(sid)
        const origin = link?.origins.get(from)
        if (link === undefined || origin === undefined || typeof header.event !== 'string' || payload === undefined) return
        link.flow.write(header.event as StreamEventName, payload)
        origin.written += payload.length
        this.bytesRelayed += payload.length
        this.metrics.relayed(payload.length)
        if (link.flow.backlog <= this.config.relayLowWaterBytes) this.reportDelivered(origin)
        return
      }
      case MESSAGES.RECEIVED: {
        const origin = this.links.get(sid)?.origins.get(from)
        if (origin === undefined || typeof header.bytes !== 'number' || header.bytes > origin.forwarded) return
        origin.received = Math.max(origin.received, header.bytes)
        if (origin.blocking && origin.forwarded - origin.received <= this.config.relayLowWaterBytes) {
          origin.blocking = false
          this.resumeFor(origin.link)
        }
        return
      }
      case MESSAGES.PAUSE:
      case MESSAGES.RESUME: {
        const origin = this.links.get(sid)?.origins.get(from)
        if (origin === undefined) return
        const pause = header.t === MESSAGES.PAUSE
        if (pause === origin.pausedByNode) return
        origin.pausedByNode = pause
        if (pause) this.pauseFor(origin.link)
        else this.resumeFor(origin.link)
        return
      }
      case MESSAGES.END: {
        const proxied = this.links.get(sid)?.origins.get(from)?.dials.get(dial)
        if (proxied !== undefined) this.unproxy(proxied, false, false)
        return
      }
      // the listener's node speaks to the dialer's
      case MESSAGES.ANSWER: {
        const found = this.remoteDial(from, sid, dial)
        if (found !== undefined) this.answered(found, header.error)
        return
      }
      case MESSAGES.EVENT: {
        const link = this.links.get(remoteKey(from, sid))
        if (link === undefined || typeof header.type !== 'string' || typeof header.name !== 'string') return
        if (payload !== undefined) link.remote?.onReceived(payload.length)
        this.streamEvent(link, header.type, header.name, payload ?? header.value)
        return
      }
      case MESSAGES.DELIVERED: {
        const link = this.links.get(remoteKey(from, sid))
        if (typeof header.bytes === 'number') link?.remote?.onDelivered(header.bytes)
        return
      }
      case MESSAGES.CLOSED: {
        const link = this.links.get(remoteKey(from, sid))
        if (link === undefined) return
        const found = this.remoteDial(from, sid, dial)
        if (found !== undefined) this.teardown(found, true, link)
      }
    }
  }

  private remoteDial (node: string, sid: string, id: string): Dial | undefined {
    const link = this.links.get(remoteKey(node, sid))
    if (link === undefined) return undefined
    for (const dial of link.dials) if (dial.id === id && dial.listener === link) return dial
    return undefined
  }

  /** Another node's peer dials a local connection. */
  private incoming (from: string, sid: string, dialId: string, header: NodeMessage['header']): void {
    const fromAddress = header.from
    const to = header.to
    const timeout = typeof header.timeout === 'number' && header.timeout > 0 ? header.timeout : this.config.dialTimeoutMS
    const answer = (error: unknown): void => {
      this.cluster?.send(from, { header: { t: MESSAGES.ANSWER, sid, dial: dialId, error: error ?? null } })
    }
    const socket = this.connection(sid)
    if (typeof fromAddress !== 'string' || typeof to !== 'string' || dialId === '') return
    if (socket === undefined || !this.registry.holds(socket, to)) return answer(ERRORS.PEER_NOT_FOUND)
    if (this.draining) return answer(ERRORS.SHUTTING_DOWN)
    const link = this.link(socket)
    const refused = this.refusal(link, dialId)
    if (refused !== undefined) {
      this.unlinkIfIdle(link)
      return answer(refused)
    }
    let origin = link.origins.get(from)
    if (origin === undefined) {
      origin = { node: from, link, dials: new Map(), forwarded: 0, received: 0, written: 0, reported: 0, reporting: undefined, blocking: false, pausedByNode: false }
      link.origins.set(from, origin)
      this.cluster?.watch(from)
    }
    const proxied: Proxied = { origin, dial: dialId, to }
    origin.dials.set(dialId, proxied)
    for (const name of streamNames(dialId)) link.proxied.set(name, proxied)
    log('[%s] dial %s from %s, made on node %s', sid, dialId, fromAddress, from)
    socket.timeout(timeout).emit(EVENTS.INCOMING, dialId, fromAddress, (err: Error | null, ...reply: unknown[]) => {
      // no answer in time: the dialer's node has timed the dial out itself
      if (err === null && origin.dials.get(dialId) === proxied) answer(reply[0])
    })
  }

  /** A stream event from a local connection on a dial made elsewhere: on to the dialer's node. */
  private forward (proxied: Proxied, type: string, name: string, value: unknown): void {
    const { origin } = proxied
    const sid = origin.link.key
    // the listener accepts the dialer's stream, and sends on its own
    const allowed = type === 'accept' ? name.endsWith('.dialer') : (type === 'queue' || type === 'error') && name.endsWith('.listener')
    if (!allowed) return this.ignored(sid, type, name)
    if (type === 'queue') {
      const chunk = chunkOf(value)
      if (chunk === undefined) {
        this.cluster?.send(origin.node, { header: { t: MESSAGES.EVENT, sid, dial: proxied.dial, type: 'error', name, value: ERRORS.INVALID_CHUNK } })
        return
      }
      origin.forwarded += chunk.length
      this.cluster?.send(origin.node, { header: { t: MESSAGES.EVENT, sid, dial: proxied.dial, type, name }, payload: chunk })
      // the path to that node backs up: stop reading until it catches up
      if (!origin.blocking && origin.forwarded - origin.received > this.config.relayHighWaterBytes) {
        origin.blocking = true
        this.pauseFor(origin.link)
      }
      return
    }
    const end = type === 'error' ? endOf(value) : null
    this.cluster?.send(origin.node, { header: { t: MESSAGES.EVENT, sid, dial: proxied.dial, type, name, value: end } })
  }

  /** Reports to the dialer's node what reached the local connection, once per turn of the event loop. */
  private reportDelivered (origin: Origin): void {
    origin.reporting ??= setImmediate(() => {
      origin.reporting = undefined
      if (origin.written === origin.reported || origin.link.flow.backlog > this.config.relayLowWaterBytes) return
      origin.reported = origin.written
      this.cluster?.send(origin.node, { header: { t: MESSAGES.DELIVERED, sid: origin.link.key, bytes: origin.written } })
    })
  }

  /** One more reason not to read from `link`; true if it was read until now (it is paused now). */
  private pauseFor (link: Link): boolean {
    if (link.blockedBy++ > 0) return false
    link.flow.pause()
    return true
  }

  /** One reason fewer; true if it was the last (it is read again now). */
  private resumeFor (link: Link): boolean {
    if (--link.blockedBy > 0) return false
    link.flow.resume()
    return true
  }

  /**
   * Forgets a dial made on another node. `tellPeer`: the local connection is
   * still there and hears its streams end; `tellNode`: the dialer's node is
   * still there and hears that the dial is over.
   */
  private unproxy (proxied: Proxied, tellPeer: boolean, tellNode: boolean): void {
    const { origin, dial } = proxied
    if (origin.dials.get(dial) !== proxied) return
    origin.dials.delete(dial)
    const link = origin.link
    for (const name of streamNames(dial)) {
      if (link.proxied.get(name) !== proxied) continue
      link.proxied.delete(name)
      if (tellPeer) link.flow.emit(streamEvent('error', name), true)
    }
    if (tellNode) this.cluster?.send(origin.node, { header: { t: MESSAGES.CLOSED, sid: link.key, dial } })
    if (origin.dials.size === 0) {
      if (origin.reporting !== undefined) clearImmediate(origin.reporting)
      if (origin.blocking) this.resumeFor(link)
      if (origin.pausedByNode) this.resumeFor(link)
      link.origins.delete(origin.node)
      this.unlinkIfIdle(link)
    }
  }
}
