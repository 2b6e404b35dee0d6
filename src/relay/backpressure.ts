/**
 * Backpressure: memory stays bounded because the server stops reading from
 * a sender while the bytes waiting for its receiver are above the high-water
 * mark, and reads it again once they are at or below the low-water mark.
 *
 * It works over any `Endpoint`: a local connection's `Flow` (engine.ts) or a
 * connection on another node (cluster/remote-listener.ts). An endpoint may be
 * held back for several reasons at once (several streams into congested
 * receivers, a node asking): a `Valve` counts them, pausing at the first and
 * resuming after the last.
 */
import type { Chunk, StreamEventName } from '../protocol.js'

/** One side of relayed streams, local or on another node. */
export interface Endpoint {
  /** Bytes written and not yet taken by the peer. */
  readonly backlog: number
  readonly isPaused: boolean
  emit: (event: StreamEventName, ...args: Array<true | string>) => void
  write: (event: StreamEventName, chunk: Chunk) => void
  pause: () => void
  resume: () => void
  /** The relay lets go of it: timers and listeners are freed, reading goes on. */
  close: () => void
}

/** The reasons not to read from one endpoint. */
export class Valve {
  private reasons = 0

  constructor (readonly endpoint: Endpoint) {}

  /** One more reason; true if the endpoint was read until now (it is paused now). */
  hold (): boolean {
    if (this.reasons++ > 0) return false
    this.endpoint.pause()
    return true
  }

  /** One reason fewer; true if it was the last (the endpoint is read again now). */
  release (): boolean {
    if (--this.reasons > 0) return false
    this.endpoint.resume()
    return true
  }
}

/** Where held senders wait: a receiver, its output and the holds on its account. */
export interface Receiver<H extends Hold = Hold> {
  readonly endpoint: Endpoint
  readonly waiting: Set<H>
}

/** One sender held back (or not) on one receiver's account: a relayed stream. */
export interface Hold {
  readonly sender: { readonly valve: Valve }
  readonly receiver: Receiver
  /** The sender is held back on this account now. */
  holding: boolean
  /** Bytes that wait for the receiver on this account. */
  readonly queued: number
  /** Whether draining the receiver lets it go (a stream not yet accepted waits for its accept). */
  readonly releasable: boolean
}

export interface WaterMarks {
  relayHighWaterBytes: number
  relayLowWaterBytes: number
}

export class Backpressure {
  constructor (private readonly marks: WaterMarks) {}

  /** Whether `bytes` waiting for a receiver have gone above the high-water mark. */
  isOver (bytes: number): boolean {
    return bytes > this.marks.relayHighWaterBytes
  }

  /** Whether `bytes` waiting for a receiver are down to the low-water mark. */
  isDrained (bytes: number): boolean {
    return bytes <= this.marks.relayLowWaterBytes
  }

  /** What waits for the receiver grew: holds the sender back if it is over the mark; true if the sender paused now. */
  check (hold: Hold): boolean {
    if (hold.holding || !this.isOver(hold.queued)) return false
    hold.holding = true
    hold.receiver.waiting.add(hold)
    return hold.sender.valve.hold()
  }

  /** Lets the sender go on, as far as this hold is concerned; true if it is read again now. */
  release (hold: Hold): boolean {
    if (!hold.holding) return false
    hold.holding = false
    hold.receiver.waiting.delete(hold)
    return hold.sender.valve.release()
  }

  /** Output to `receiver` may have drained: lets the senders it held back go on. */
  drained<H extends Hold> (receiver: Receiver<H>, resumed: (hold: H) => void): void {
    if (receiver.waiting.size === 0 || !this.isDrained(receiver.endpoint.backlog)) return
    for (const hold of [...receiver.waiting]) {
      if (hold.releasable && this.release(hold)) resumed(hold)
    }
  }
}
