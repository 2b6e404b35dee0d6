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
 */
import { rawSocketOf } from './flow.js'
import { EVENTS, type RendezvousServer } from './protocol.js'
import { JOINED_ROOM } from './constants.js'

export interface Announcement {
  address: string
  /** Connection that holds the address: it is not told about itself. */
  ownerId: string
}

/** Header of an unmasked, final WebSocket text frame carrying `length` bytes. */
function frameHeader (length: number): Buffer {
  if (length < 126) return Buffer.from([0x81, length])
  if (length < 65536) return Buffer.from([0x81, 126, length >> 8, length & 0xff])
  const header = Buffer.alloc(10)
  header[0] = 0x81
  header[1] = 127
  header.writeBigUInt64BE(BigInt(length), 2)
  return header
}

/** All announcements as consecutive frames; frame i spans [offsets[i], offsets[i + 1]). */
function encode (batch: readonly Announcement[]): { buffer: Buffer, offsets: number[] } {
  const parts: Buffer[] = []
  const offsets = [0]
  let at = 0
  for (const { address } of batch) {
    const payload = Buffer.from(`42${JSON.stringify([EVENTS.PEER, address])}`)
    const header = frameHeader(payload.length)
    parts.push(header, payload)
    at += header.length + payload.length
    offsets.push(at)
  }
  return { buffer: Buffer.concat(parts, at), offsets }
}

export class Fanout {
  /** Announcements not sent to a peer because it was not reading. */
  dropped = 0

  constructor (private readonly io: RendezvousServer, private readonly slowBytes: number) {}

  /** Sends every announcement of `batch` to every joined connection but its owner; returns the deliveries. */
  send (batch: readonly Announcement[]): number {
    const room = this.io.sockets.adapter.rooms.get(JOINED_ROOM)
    if (batch.length === 0 || room === undefined) return 0
    const { buffer, offsets } = encode(batch)
    // which frames each owner must not receive; nearly always one or none
    const owned = new Map<string, number[]>()
    batch.forEach(({ ownerId }, i) => {
      const list = owned.get(ownerId)
      if (list === undefined) owned.set(ownerId, [i])
      else list.push(i)
    })
    let deliveries = 0
    for (const id of room) {
      const socket = this.io.sockets.sockets.get(id)
      if (socket === undefined) continue
      const own = owned.get(id)
      const count = batch.length - (own?.length ?? 0)
      if (count === 0) continue
      const raw = rawSocketOf(socket)
      if (raw === undefined) {
        batch.forEach(({ address }, i) => { if (own?.includes(i) !== true) socket.emit(EVENTS.PEER, address) })
      } else if (raw.writableLength > this.slowBytes) {
        this.dropped += count
        continue
      } else if (own === undefined) {
        raw.write(buffer)
      } else {
        // the slices around this peer's own frames: one writev under cork
        raw.cork()
        let from = 0
        for (const i of own) {
          if (offsets[i] as number > from) raw.write(buffer.subarray(from, offsets[i]))
          from = offsets[i + 1] as number
        }
        if (from < buffer.length) raw.write(buffer.subarray(from))
        raw.uncork()
      }
      deliveries += count
    }
    return deliveries
  }
}
