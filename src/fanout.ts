/**
 * Writing announcements to many peers with as few syscalls as possible.
 *
 * A batch of `ws-peer` announcements is encoded once, as consecutive
 * WebSocket text frames in one buffer, and written to each websocket peer's
 * TCP socket in a single write (a peer's own address is skipped by writing
 * the slices around its frame). Engine.IO and Socket.IO are bypassed for
 * these frames only: the packets are the same bytes Socket.IO would send
 * (`42["ws-peer","<address>"]`, identical for Engine.IO v3 and v4), and `ws`
 * writes whole frames synchronously, so frames never interleave. Polling
 * peers, and peers in the middle of an upgrade, get them through Socket.IO.
 *
 * A peer whose socket already holds more than `slowBytes` unsent is skipped:
 * announcements are refreshes, and piling them up for a peer that does not
 * read would only grow the server's memory.
 *
 * A batch is written to FANOUT_SLICE_SOCKETS peers per turn of the event
 * loop: one loop over 10,000 peers would hold everything else (joins, dials,
 * relayed data) back for the whole of it.
 */
import { encodeTextFrames, isWebSocket, rawSocketOf, unsentBytes, type Frames } from './engine.js'
import { EVENTS, STARS, type PeerSocket, type SocketServer, type Star } from './protocol.js'
import { FANOUT_SLICE_SOCKETS, JOINED_ROOMS } from './constants.js'

export interface Announcement {
  address: string
  /** Connection that holds the address: it is not told about itself. */
  ownerId: string
  /** Its transport: it is announced to the peers of that transport only. */
  star: Star
}

/** All announcements as consecutive WebSocket frames of the Socket.IO packets Socket.IO would send. */
function encode (batch: readonly Announcement[]): Frames {
  return encodeTextFrames(batch.map(({ address }) => Buffer.from(`42${JSON.stringify([EVENTS.PEER, address])}`)))
}

/** Told after each slice: announcements delivered, and those skipped for peers not reading. */
export type FanoutReport = (deliveries: number, dropped: number) => void

/** What discovery needs to reach the peers that hear announcements. */
export interface Announcer {
  /** Connections that hear announcements of one transport. */
  listenersOf: (star: Star) => number
  /** Whether a batch is still being written. */
  readonly busy: boolean
  subscribe: (socket: PeerSocket, star: Star) => void
  unsubscribe: (socket: PeerSocket, star: Star) => void
  send: (batch: readonly Announcement[], fresh: number, report: FanoutReport) => void
  /** Cancels what is not written yet. */
  stop: () => void
}

export class Fanout implements Announcer {
  /** Slices still to write, so that `stop` can cancel them. */
  private readonly pending = new Set<NodeJS.Immediate>()

  constructor (private readonly io: SocketServer, private readonly slowBytes: number) {}

  listenersOf (star: Star): number {
    return this.io.sockets.adapter.rooms.get(JOINED_ROOMS[star])?.size ?? 0
  }

  /** The connection now holds an address of `star`: it hears about the others of it. */
  subscribe (socket: PeerSocket, star: Star): void {
    void socket.join(JOINED_ROOMS[star])
  }

  /** The connection holds no address of `star` any more. */
  unsubscribe (socket: PeerSocket, star: Star): void {
    void socket.leave(JOINED_ROOMS[star])
  }

  /**
   * Sends every announcement of `batch` to every connection joined with its
   * transport but its owner: the first slice of peers now, the rest on the
   * next turns. The first `fresh` are new joins; the rest are refreshes,
   * which a websocket peer that Engine.IO is busy writing to (a relayed
   * chunk, a join's answer) misses this time rather than getting one
   * Socket.IO packet each.
   */
  send (batch: readonly Announcement[], fresh: number, report: FanoutReport): void {
    for (const star of STARS) {
      const part = batch.filter((a) => a.star === star)
      if (part.length === batch.length) { this.sendTo(star, batch, fresh, report); return }
      if (part.length > 0) this.sendTo(star, part, batch.slice(0, fresh).filter((a) => a.star === star).length, report)
    }
  }

  private sendTo (star: Star, batch: readonly Announcement[], fresh: number, report: FanoutReport): void {
    const room = this.io.sockets.adapter.rooms.get(JOINED_ROOMS[star])
    if (batch.length === 0 || room === undefined) return
    const { buffer, offsets } = encode(batch)
    // which frames each owner must not receive; nearly always one or none
    const owned = new Map<string, number[]>()
    batch.forEach(({ ownerId }, i) => {
      const list = owned.get(ownerId)
      if (list === undefined) owned.set(ownerId, [i])
      else list.push(i)
    })
    const ids = [...room]
    const slice = (from: number): void => {
      const to = Math.min(ids.length, from + FANOUT_SLICE_SOCKETS)
      const [deliveries, dropped] = this.write(ids, from, to, batch, fresh, buffer, offsets, owned)
      report(deliveries, dropped)
      if (to >= ids.length) return
      const next = setImmediate(() => {
        this.pending.delete(next)
        slice(to)
      })
      this.pending.add(next)
    }
    slice(0)
  }

  /** Whether a batch is still being written. */
  get busy (): boolean {
    return this.pending.size > 0
  }

  /** Cancels the slices not written yet. */
  stop (): void {
    for (const immediate of this.pending) clearImmediate(immediate)
    this.pending.clear()
  }

  private write (ids: string[], from: number, to: number, batch: readonly Announcement[], fresh: number, buffer: Buffer, offsets: number[], owned: Map<string, number[]>): [number, number] {
    let deliveries = 0
    let dropped = 0
    for (let k = from; k < to; k++) {
      const socket = this.io.sockets.sockets.get(ids[k])
      if (socket === undefined) continue
      const id = socket.id
      const own = owned.get(id)
      const count = batch.length - (own?.length ?? 0)
      if (count === 0) continue
      const raw = rawSocketOf(socket)
      if (raw === undefined) {
        // polling peers get everything; a busy websocket only the new joins
        const upTo = isWebSocket(socket) ? Math.min(fresh, batch.length) : batch.length
        let sent = 0
        for (let i = 0; i < upTo; i++) {
          if (own?.includes(i) === true) continue
          socket.emit(EVENTS.PEER, (batch[i]).address)
          sent++
        }
        deliveries += sent
        dropped += count - sent
        continue
      } else if (unsentBytes(socket) > this.slowBytes) {
        dropped += count
        continue
      } else if (own === undefined) {
        raw.write(buffer)
      } else {
        // the slices around this peer's own frames: one writev under cork
        raw.cork()
        let at = 0
        for (const i of own) {
          if (offsets[i] > at) raw.write(buffer.subarray(at, offsets[i]))
          at = offsets[i + 1]
        }
        if (at < buffer.length) raw.write(buffer.subarray(at))
        raw.uncork()
      }
      deliveries += count
    }
    return [deliveries, dropped]
  }
}
