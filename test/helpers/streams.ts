/**
 * The socket.io-pull-stream sub-protocol spoken by hand over real clients, so
 * relay tests can control every event: when a receiver accepts, how fast a
 * sender sends, how a stream ends.
 */
import { createHash, randomUUID } from 'node:crypto'
import assert from 'node:assert/strict'
import type { RendezvousServer } from '../../src/index.js'
import type { Client } from './clients.js'
import { until, within } from './wait.js'

export const STREAM = 'socket.io-pull-stream.'

export interface Received {
  bytes: number
  chunks: number
  sha256: string
  /** The end event's value: `true` for a clean end, or an error message. */
  end: unknown
}

/** What a sender will hash to, for comparison with `Received.sha256`. */
export function sha256 (chunks: Iterable<Buffer>): string {
  const hash = createHash('sha256')
  for (const chunk of chunks) hash.update(chunk)
  return hash.digest('hex')
}

/** Chunks of pseudo-random bytes (distinct per chunk, so reordering shows). */
export function* makeChunks (count: number, size: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) {
    const chunk = Buffer.allocUnsafe(size)
    let j = 0
    for (; j + 4 <= size; j += 4) chunk.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j)
    for (; j < size; j++) chunk[j] = (i + j) & 0xff
    yield chunk
  }
}

export class Source {
  readonly done: Promise<Received>
  private bytes = 0
  private chunks = 0
  private readonly hash = createHash('sha256')
  onChunk: ((chunk: Buffer) => void) | undefined

  /** Starts receiving `name` on `client`; `accept: false` waits for `accept()`. */
  constructor (private readonly client: Client, readonly name: string, accept = true) {
    const queue = (chunk: Buffer): void => {
      const buffer = Buffer.from(chunk)
      this.bytes += buffer.length
      this.chunks++
      this.hash.update(buffer)
      this.onChunk?.(buffer)
    }
    this.done = new Promise<Received>((resolve) => {
      const ended = (end: unknown): void => {
        // as socket.io-pull-stream does: a second end for the name is not this stream's
        client.socket.off(`${STREAM}queue.${name}`, queue)
        client.socket.off(`${STREAM}error.${name}`, ended)
        resolve({ bytes: this.bytes, chunks: this.chunks, sha256: this.hash.digest('hex'), end })
      }
      client.socket.on(`${STREAM}queue.${name}`, queue)
      client.socket.on(`${STREAM}error.${name}`, ended)
    })
    if (accept) this.accept()
  }

  get received (): number {
    return this.bytes
  }

  accept (): void {
    this.client.emit(`${STREAM}accept.${this.name}`)
  }
}

/** Resolves once the server has accepted `name` from `client` (register before the dial). */
export async function accepted (client: Client, name: string): Promise<void> {
  await client.next(`${STREAM}accept.${name}`)
}

/** Sends `chunks` on stream `name`, then its end (`true`, or an error message); `null` leaves it open. */
export function send (client: Client, name: string, chunks: Iterable<Buffer>, end: true | string | null = true): void {
  for (const chunk of chunks) client.emit(`${STREAM}queue.${name}`, chunk)
  if (end !== null) client.emit(`${STREAM}error.${name}`, end)
}

export interface Relayed {
  dialId: string
  /** Stream names: dialer → listener, and back. */
  forward: string
  back: string
  /** The listener's receiving end of `forward`, accepted. */
  atListener: Source
  /** The dialer's receiving end of `back`, accepted. */
  atDialer: Source
  /** Resolves when the server has accepted `forward` from the dialer. */
  dialerMaySend: Promise<void>
  /** Resolves when the server has accepted `back` from the listener. */
  listenerMaySend: Promise<void>
}

/**
 * Dials `to` from `from` the way libp2p-websocket-star does, with the
 * listener answering at once, and opens both receiving ends.
 */
export async function relay (dialer: Client, from: string, listener: Client, to: string, dialId = randomUUID()): Promise<Relayed> {
  const forward = `${dialId}.dialer`
  const back = `${dialId}.listener`
  const dialerMaySend = accepted(dialer, forward)
  const listenerMaySend = accepted(listener, back)
  // awaited only by tests that send: a guard's timeout must not go unhandled in the others
  dialerMaySend.catch(() => {})
  listenerMaySend.catch(() => {})
  let atListener: Source | undefined
  const answered = new Promise<void>((resolve) => {
    const onIncoming = (id: string, dialFrom: string, answer: () => void): void => {
      if (id !== dialId) return
      listener.socket.off('ss-incomming', onIncoming)
      assert.equal(dialFrom, from)
      atListener = new Source(listener, forward)
      answer()
      resolve()
    }
    listener.socket.on('ss-incomming', onIncoming)
  })
  const ack = await dialer.request('ss-dial', from, to, dialId)
  assert.deepEqual(ack.filter((x) => x !== undefined && x !== null), [], `dial ${dialId} failed: ${JSON.stringify(ack)}`)
  await within(answered, 'ss-incomming')
  const atDialer = new Source(dialer, back)
  return { dialId, forward, back, atListener: atListener as Source, atDialer, dialerMaySend, listenerMaySend }
}

/** Resolves once `server` holds no dial, no relayed stream and no connection with either. */
export async function relayIsEmpty (server: Pick<RendezvousServer, 'stats'>): Promise<void> {
  await until(() => {
    const s = server.stats()
    return s.dials === 0 && s.relayedStreams === 0 && s.relayConnections === 0
  }, 'the relay tables are empty')
}
