/**
 * The relay's state for each connection taking part in relayed streams, local
 * or on another node: its endpoint, the streams it sends and receives by name,
 * and its dials. Stream events are dispatched here by one map lookup on the
 * connection they came from, in the role they must play there: only a
 * stream's sender can queue or end it, only its receiver can accept it, so no
 * other connection can touch it whatever name it sends.
 */
import debug from 'debug'
import { MAX_LOGGED_NAME_LENGTH } from '../constants.js'
import { ChunkParts, ERRORS, type Chunk } from '../protocol.js'
import { Valve, type Endpoint, type Receiver } from './backpressure.js'
import { peerError, type Dial, type End, type Stream } from './dial.js'

const log = debug('rendezvous:relay')

/** One connection's part in the relay. */
export class Party implements Receiver<Stream> {
  readonly endpoint: Endpoint
  readonly valve: Valve
  /** Streams this connection sends on, by name. */
  readonly sending = new Map<string, Stream>()
  /** Streams this connection receives, by name. */
  readonly receiving = new Map<string, Stream>()
  readonly dials = new Set<Dial>()
  /** Streams into this connection whose sender waits for it to drain. */
  readonly waiting = new Set<Stream>()
  /** Bytes relayed to or from this connection while this party lives (`Parties` hands them on when it goes). */
  relayed = 0

  /** @param endpoint makes the endpoint, given the callback for when its output may have drained */
  constructor (readonly key: string, endpoint: (drained: () => void) => Endpoint, drained: (party: Party) => void) {
    this.endpoint = endpoint(() => { drained(this) })
    this.valve = new Valve(this.endpoint)
  }

  /** Relayed streams this connection sends or receives. */
  get streams (): number {
    return this.sending.size + this.receiving.size
  }

  /** Whether `name` is a stream of this connection, in either role. */
  has (name: string): boolean {
    return this.sending.has(name) || this.receiving.has(name)
  }
}

/** What the stream events of a party do. */
export interface StreamHandlers {
  queue: (stream: Stream, chunk: Chunk) => void
  end: (stream: Stream, end: End) => void
  accept: (stream: Stream) => void
}

/** A relayed chunk as Socket.IO decoded it or the chunk tap took it, or undefined when it is not binary. */
export function chunkOf (value: unknown): Chunk | undefined {
  if (Buffer.isBuffer(value) || value instanceof ChunkParts) return value
  if (value instanceof ArrayBuffer) return Buffer.from(value)
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  return undefined
}

/** How a sender's `error` event ends its stream: `true`, its message (bounded), or a generic error. */
export function endOf (value: unknown): End {
  return value === true ? true : peerError(value, ERRORS.STREAM_ERROR)
}

export function logIgnored (connection: string, event: string, name = ''): void {
  log('[%s] ignored %s%s: no such stream on this connection in that role', connection, event.slice(0, MAX_LOGGED_NAME_LENGTH), name === '' ? '' : ` ${name.slice(0, MAX_LOGGED_NAME_LENGTH)}`)
}

export class Parties {
  private readonly byKey = new Map<string, Party>()

  /**
   * @param inUse whether something besides its dials keeps a party (a
   * dial made on another node to this connection)
   * @param removed told of each party let go of
   */
  constructor (
    private readonly handlers: StreamHandlers,
    private readonly drained: (party: Party) => void,
    private readonly inUse: (party: Party) => boolean,
    /** Told of each party let go of, so that what it relayed is not lost. */
    private readonly removed: (party: Party) => void
  ) {}

  get size (): number {
    return this.byKey.size
  }

  get (key: string): Party | undefined {
    return this.byKey.get(key)
  }

  values (): IterableIterator<Party> {
    return this.byKey.values()
  }

  /** The party of `key`, made with `endpoint` if it has none yet. */
  open (key: string, endpoint: (drained: () => void) => Endpoint): Party {
    let party = this.byKey.get(key)
    if (party === undefined) {
      party = new Party(key, endpoint, this.drained)
      this.byKey.set(key, party)
    }
    return party
  }

  /** Lets go of a party that nothing uses any more. */
  releaseIfIdle (party: Party): void {
    if (party.dials.size > 0 || this.inUse(party)) return
    this.remove(party)
  }

  /** Lets go of a party, whatever it still takes part in. */
  remove (party: Party): void {
    if (this.byKey.get(party.key) !== party) return
    party.endpoint.close()
    this.byKey.delete(party.key)
    this.removed(party)
  }

  /** A stream event (`queue`, `error` or `accept`) from `party`. */
  dispatch (party: Party, type: string, name: string, value: unknown): void {
    switch (type) {
      case 'queue': {
        const stream = party.sending.get(name)
        if (stream === undefined || stream.ending !== undefined) return logIgnored(party.key, type, name)
        const chunk = chunkOf(value)
        if (chunk === undefined) {
          log('[%s] stream %s: chunk is not binary, ending it', party.key, name)
          this.handlers.end(stream, ERRORS.INVALID_CHUNK)
          return
        }
        this.handlers.queue(stream, chunk)
        return
      }
      case 'error': {
        const stream = party.sending.get(name)
        if (stream === undefined || stream.ending !== undefined) return logIgnored(party.key, type, name)
        this.handlers.end(stream, endOf(value))
        return
      }
      case 'accept': {
        const stream = party.receiving.get(name)
        if (stream === undefined || stream.accepted) return logIgnored(party.key, type, name)
        this.handlers.accept(stream)
        return
      }
      default:
        logIgnored(party.key, type, name)
    }
  }
}
