/**
 * One dial's life: pending (the listener has not answered) → answered (the
 * listener's stream is open too) → established (both streams accepted) →
 * ended. A dial makes two streams, `<dialId>.dialer` from the dialer to the
 * listener and `<dialId>.listener` back; for each, the server is the receiver
 * towards the sender and the sender towards the receiver.
 *
 * Its timers and limits live here: the dial timeout (answer and both
 * accepts), then the duration limit, and the data limit. Whatever the cause,
 * a dial ends through `end(reason)`.
 */
import debug from 'debug'
import { MAX_PEER_ERROR_LENGTH } from '../constants.js'
import { ERRORS, STREAM_EVENT_PREFIX, type Ack, type Chunk, type StreamEventName } from '../protocol.js'
import type { Backpressure, Hold } from './backpressure.js'
import type { Party } from './parties.js'

const log = debug('rendezvous:relay')

/** What ends a stream: `true` for a clean end, or an error message. */
export type End = true | string

export type DialState = 'pending' | 'answered' | 'established' | 'ended'

export interface DialLimits {
  dialTimeoutMS: number
  /** Bytes one dial may relay, both directions together; 0: no limit. */
  maxRelayBytes: number
  /** How long one dial may stay open; 0: no limit. */
  maxRelayDurationMS: number
}

/** What every dial shares: the limits, backpressure, and the relay's accounts. */
export interface DialContext {
  readonly limits: DialLimits
  readonly backpressure: Backpressure
  /** The listener's answer, or its absence: success, and when the dial came. */
  answered: (success: boolean, startedAt: bigint) => void
  /** Bytes delivered to a receiver. */
  delivered: (bytes: number) => void
  streamOpened: () => void
  streamClosed: () => void
  /** A sender paused or resumed on a congested receiver's account, for the log. */
  held: (stream: Stream, paused: boolean) => void
  /** The dial is over: the relay forgets it. */
  over: (dial: Dial) => void
}

/** The event of a relayed stream's sub-protocol (socket.io-pull-stream). */
export function streamEvent (type: 'accept' | 'queue' | 'error', name: string): StreamEventName {
  return `${STREAM_EVENT_PREFIX}${type}.${name}`
}

/** The two streams of a dial: dialer → listener, and back. */
export function streamNames (dialId: string): [forward: string, back: string] {
  return [`${dialId}.dialer`, `${dialId}.listener`]
}

/** How a sender's `error` event or a refusal from a peer reads: its message (bounded), or `fallback`. */
export function peerError (value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value.slice(0, MAX_PEER_ERROR_LENGTH) : fallback
}

/** One relayed stream of a dial. */
export class Stream implements Hold {
  accepted = false
  holding = false
  /** Chunks held until the receiver accepts. */
  pending: Chunk[] = []
  pendingBytes = 0
  /** The sender's end, delivered after `pending`. */
  ending: End | undefined
  /** The event its chunks reach the receiver under. */
  readonly queueEvent: StreamEventName

  constructor (readonly name: string, readonly dial: Dial, readonly sender: Party, readonly receiver: Party) {
    this.queueEvent = streamEvent('queue', name)
  }

  get queued (): number {
    return this.accepted ? this.receiver.endpoint.backlog : this.pendingBytes
  }

  get releasable (): boolean {
    return this.accepted
  }
}

/** What the dialer asked: its dial id, the addresses, and how to answer it. */
export interface DialRequestOf {
  id: string
  from: string
  to: string
  ack: Ack
  /** `process.hrtime.bigint()` when the request arrived. */
  startedAt: bigint
}

export class Dial {
  private phase: DialState = 'pending'
  readonly streams: Stream[] = []
  readonly id: string
  readonly from: string
  readonly to: string
  private readonly ack: Ack
  private readonly startedAt: bigint
  private bytes = 0
  private timer: NodeJS.Timeout | undefined

  constructor (request: DialRequestOf, readonly dialer: Party, readonly listener: Party, private readonly context: DialContext) {
    ({ id: this.id, from: this.from, to: this.to, ack: this.ack, startedAt: this.startedAt } = request)
    dialer.dials.add(this)
    listener.dials.add(this)
    this.timer = setTimeout(() => { this.timedOut() }, context.limits.dialTimeoutMS)
    // the server is the receiver of the dialer's stream: accept it now and
    // hold what comes until the listener accepts
    const forward = this.open(streamNames(this.id)[0], dialer, listener)
    dialer.endpoint.emit(streamEvent('accept', forward.name))
  }

  get state (): DialState {
    return this.phase
  }

  /** The listener's answer: nothing (or an empty value) accepts the dial, anything else refuses it. */
  answer (error: unknown): void {
    if (this.phase !== 'pending') return
    if (error !== undefined && error !== null && error !== false && error !== '') {
      const message = peerError(error, ERRORS.DIAL_REFUSED)
      log('dial %s refused by the listener: %s', this.id, message)
      this.reply(false, message)
      this.phase = 'answered'
      this.end(true)
      return
    }
    this.phase = 'answered'
    const back = this.open(streamNames(this.id)[1], this.listener, this.dialer)
    this.listener.endpoint.emit(streamEvent('accept', back.name))
    log('dial %s answered', this.id)
    this.reply(true)
    this.established()
  }

  /** The receiver accepted `stream`: what was held goes to it. */
  accept (stream: Stream): void {
    stream.accepted = true
    const { pending } = stream
    stream.pending = []
    stream.pendingBytes = 0
    for (const chunk of pending) this.deliver(stream, chunk)
    // held back before the accept: go on once what was held has drained
    const { backpressure } = this.context
    if (stream.holding && backpressure.isDrained(stream.receiver.endpoint.backlog) && backpressure.release(stream)) this.context.held(stream, false)
    if (stream.ending !== undefined) this.close(stream)
    else this.check(stream)
    this.established()
  }

  /** A chunk from the sender of `stream`. */
  carry (stream: Stream, chunk: Chunk): void {
    this.bytes += chunk.length
    const { maxRelayBytes } = this.context.limits
    if (maxRelayBytes > 0 && this.bytes > maxRelayBytes) {
      log('dial %s reached the data limit', this.id)
      this.end(ERRORS.RELAY_DATA_LIMIT)
      return
    }
    if (stream.accepted) {
      this.deliver(stream, chunk)
    } else {
      stream.pending.push(chunk)
      stream.pendingBytes += chunk.length
    }
    this.check(stream)
  }

  /** The sender ended `stream`: the receiver hears it after what is held. */
  endStream (stream: Stream, end: End): void {
    stream.ending = end
    if (stream.accepted) this.close(stream)
  }

  /**
   * Ends the whole dial: a dial not yet answered is refused, and every stream
   * still open ends with `reason` on each side but `gone` (a side that is no
   * longer connected).
   */
  end (reason: End, gone?: Party): void {
    if (this.phase === 'ended') return
    if (this.phase === 'pending') this.reply(false, ERRORS.PEER_NOT_FOUND)
    this.phase = 'ended'
    for (const stream of [...this.streams]) {
      for (const side of [stream.receiver, stream.sender]) {
        if (side !== gone) side.endpoint.emit(streamEvent('error', stream.name), reason)
      }
      this.free(stream)
    }
    clearTimeout(this.timer)
    this.timer = undefined
    this.dialer.dials.delete(this)
    this.listener.dials.delete(this)
    log('dial %s over', this.id)
    this.context.over(this)
  }

  private open (name: string, sender: Party, receiver: Party): Stream {
    const stream = new Stream(name, this, sender, receiver)
    this.streams.push(stream)
    sender.sending.set(name, stream)
    receiver.receiving.set(name, stream)
    this.context.streamOpened()
    return stream
  }

  private reply (success: boolean, error?: string): void {
    this.context.answered(success, this.startedAt)
    // the old server answered a successful dial with no arguments at all
    if (error === undefined) (this.ack as () => void)()
    else this.ack(error)
  }

  private timedOut (): void {
    this.timer = undefined
    if (this.phase === 'pending') {
      log('dial %s: listener did not answer in time', this.id)
      this.reply(false, ERRORS.DIAL_TIMEOUT)
      this.phase = 'answered'
    } else {
      log('dial %s: a stream was not accepted in time', this.id)
    }
    this.end(ERRORS.DIAL_TIMEOUT)
  }

  /** Both streams accepted: the dial timeout gives way to the duration limit. */
  private established (): void {
    if (this.phase !== 'answered' || this.streams.length < 2 || !this.streams.every((s) => s.accepted)) return
    this.phase = 'established'
    clearTimeout(this.timer)
    this.timer = undefined
    const { maxRelayDurationMS } = this.context.limits
    if (maxRelayDurationMS > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        log('dial %s reached the duration limit', this.id)
        this.end(ERRORS.RELAY_DURATION_LIMIT)
      }, maxRelayDurationMS)
    }
  }

  private deliver (stream: Stream, chunk: Chunk): void {
    stream.receiver.endpoint.write(stream.queueEvent, chunk)
    stream.sender.relayed += chunk.length
    stream.receiver.relayed += chunk.length
    this.context.delivered(chunk.length)
  }

  private check (stream: Stream): void {
    if (this.context.backpressure.check(stream)) this.context.held(stream, true)
  }

  /** The receiver hears the sender's end; once both streams are closed, the dial is over. */
  private close (stream: Stream): void {
    stream.receiver.endpoint.emit(streamEvent('error', stream.name), stream.ending as End)
    this.free(stream)
    if (this.phase !== 'pending' && this.streams.length === 0) this.end(true)
  }

  /** Frees one stream's state. */
  private free (stream: Stream): void {
    if (this.context.backpressure.release(stream)) this.context.held(stream, false)
    stream.pending = []
    stream.pendingBytes = 0
    stream.sender.sending.delete(stream.name)
    stream.receiver.receiving.delete(stream.name)
    const at = this.streams.indexOf(stream)
    if (at < 0) return
    this.streams.splice(at, 1)
    this.context.streamClosed()
  }
}
