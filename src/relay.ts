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
 */
import debug from 'debug'
import { Flow } from './flow.js'
import type { Metrics } from './metrics.js'
import { ERRORS, EVENTS, STREAM_EVENT_PREFIX, type Ack, type DialRequest, type PeerSocket, type StreamEventName } from './protocol.js'
import type { Registry } from './registry.js'

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
  socket: PeerSocket
  flow: Flow
  /** Streams this connection sends on, by name. */
  sending: Map<string, Stream>
  /** Streams this connection receives, by name. */
  receiving: Map<string, Stream>
  dials: Set<Dial>
  /** Streams from this connection held back by a congested receiver. */
  blockedBy: number
  /** Streams into this connection whose sender waits for it to drain. */
  waiting: Set<Stream>
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

  constructor (
    private readonly config: RelayConfig,
    private readonly registry: Registry<PeerSocket>,
    private readonly metrics: Metrics
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

  dial (socket: PeerSocket, request: DialRequest): void {
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
    const target = this.registry.holderOf(to)
    if (target === undefined) return fail(ERRORS.PEER_NOT_FOUND)

    const dialer = this.link(socket)
    const listener = this.link(target)
    const forward = `${dialId}.dialer`
    const back = `${dialId}.listener`
    // a name in use on either connection, in either role, would be ambiguous to that client
    const inUse = (link: Link): boolean => [forward, back].some((name) => link.sending.has(name) || link.receiving.has(name))
    if (inUse(dialer) || inUse(listener)) {
      this.unlinkIfIdle(dialer)
      this.unlinkIfIdle(listener)
      return fail(ERRORS.DIAL_ID_IN_USE)
    }
    const streamsOf = (link: Link): number => link.sending.size + link.receiving.size
    if (streamsOf(dialer) + 2 > this.config.maxStreamsPerConnection || streamsOf(listener) + 2 > this.config.maxStreamsPerConnection) {
      this.unlinkIfIdle(dialer)
      this.unlinkIfIdle(listener)
      return fail(ERRORS.TOO_MANY_STREAMS)
    }

    const dial: Dial = { id: dialId, from, to, dialer, listener, streams: [], answered: false, ack, startedAt, bytes: 0, timer: undefined }
    this.dialCount++
    dialer.dials.add(dial)
    listener.dials.add(dial)
    dial.timer = setTimeout(() => { this.timedOut(dial) }, this.config.dialTimeoutMS)
    log('[%s] dial %s from %s to %s [%s]', socket.id, dialId, from, to, target.id)

    // the server is the receiver of the dialer's stream: accept it now and
    // hold what comes until the listener accepts
    this.open(dial, forward, dialer, listener)
    socket.emit(streamEvent('accept', forward))
    // Socket.IO keeps an ack until it is answered: without a timeout, a
    // listener that never answers would keep every such dial, and through it
    // the dialer's connection, for as long as it stays connected
    target.timeout(this.config.dialTimeoutMS).emit(EVENTS.INCOMING, dialId, from, (err: Error | null, ...answer: unknown[]) => {
      if (err === null) this.answered(dial, answer[0])
    })
  }

  /** A `socket.io-pull-stream.*` event from `socket`. */
  onStreamEvent (socket: PeerSocket, event: string, args: unknown[]): void {
    const rest = event.slice(STREAM_EVENT_PREFIX.length)
    const dot = rest.indexOf('.')
    const type = rest.slice(0, dot)
    const name = rest.slice(dot + 1)
    const link = this.links.get(socket.id)
    if (dot < 0 || link === undefined) return this.ignored(socket, event)
    switch (type) {
      case 'queue': {
        const stream = link.sending.get(name)
        if (stream === undefined || stream.end !== undefined) return this.ignored(socket, event)
        const chunk = chunkOf(args[0])
        if (chunk === undefined) {
          log('[%s] stream %s: chunk is not binary, ending it', socket.id, name)
          this.finish(stream, ERRORS.INVALID_CHUNK)
          return
        }
        this.data(stream, chunk)
        return
      }
      case 'error': {
        const stream = link.sending.get(name)
        if (stream === undefined || stream.end !== undefined) return this.ignored(socket, event)
        const value = args[0]
        this.finish(stream, value === true ? true : typeof value === 'string' && value !== '' ? value.slice(0, 1024) : ERRORS.STREAM_ERROR)
        return
      }
      case 'accept': {
        const stream = link.receiving.get(name)
        if (stream === undefined || stream.accepted) return this.ignored(socket, event)
        this.accepted(stream)
        return
      }
      default:
        this.ignored(socket, event)
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
  }

  /** The connection is gone: end every stream that touches it. */
  connectionClosed (socket: PeerSocket): void {
    const link = this.links.get(socket.id)
    if (link === undefined) return
    for (const dial of [...link.dials]) this.teardown(dial, true, link)
    link.flow.close()
    this.links.delete(socket.id)
  }

  /** Ends every stream, telling both sides (they are still connected), and frees everything. */
  stop (): void {
    for (const link of [...this.links.values()]) {
      for (const dial of [...link.dials]) this.teardown(dial, true)
      link.flow.close()
      this.links.delete(link.socket.id)
    }
  }

  private link (socket: PeerSocket): Link {
    let link = this.links.get(socket.id)
    if (link === undefined) {
      const created: Link = {
        socket,
        flow: new Flow(socket, () => { this.drained(created) }),
        sending: new Map(),
        receiving: new Map(),
        dials: new Set(),
        blockedBy: 0,
        waiting: new Set()
      }
      link = created
      this.links.set(socket.id, link)
    }
    return link
  }

  private unlinkIfIdle (link: Link): void {
    if (link.dials.size > 0) return
    link.flow.close()
    this.links.delete(link.socket.id)
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
    const back = this.open(dial, `${dial.id}.listener`, dial.listener, dial.dialer)
    dial.listener.socket.emit(streamEvent('accept', back.name))
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
    stream.receiver.socket.emit(streamEvent('error', stream.name), stream.end)
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
    if (stream.sender.blockedBy++ === 0) {
      log('[%s] paused: [%s] is %d bytes behind', stream.sender.socket.id, stream.receiver.socket.id, queued)
      stream.sender.flow.pause()
    }
  }

  /** Output to `link` may have drained: let the senders it held back go on. */
  private drained (link: Link): void {
    if (link.waiting.size === 0 || link.flow.backlog > this.config.relayLowWaterBytes) return
    for (const stream of [...link.waiting]) {
      if (stream.accepted) this.unblock(stream)
    }
  }

  private unblock (stream: Stream): void {
    if (!stream.blocking) return
    stream.blocking = false
    stream.receiver.waiting.delete(stream)
    if (--stream.sender.blockedBy === 0) {
      log('[%s] resumed', stream.sender.socket.id)
      stream.sender.flow.resume()
    }
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
        if (side !== gone) side.socket.emit(streamEvent('error', stream.name), end)
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
    this.dialCount--
    log('dial %s over', dial.id)
    this.unlinkIfIdle(dial.dialer)
    this.unlinkIfIdle(dial.listener)
  }

  private ignored (socket: PeerSocket, event: string): void {
    log('[%s] ignored %s: no such stream on this connection in that role', socket.id, event.slice(0, 200))
  }
}
