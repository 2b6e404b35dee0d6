/**
 * Discovery: every joined address is announced (`ws-peer`) to every other
 * joined connection at once, then again every refresh interval while it stays
 * joined.
 *
 * One scheduler serves all addresses: it wakes every few milliseconds and
 * announces the next slice of a round-robin list, sized so that the whole list
 * goes round once per interval. A refresh is thus spread evenly over the
 * interval instead of arriving as one burst per peer per interval, and there is
 * no timer per peer to leak. Each announcement is one Socket.IO room broadcast:
 * encoded once, written to every member of the room.
 */
import { DISCOVERY_TICK_MAX_MS, DISCOVERY_TICK_MIN_MS, JOINED_ROOM } from './constants.js'
import { EVENTS, type PeerSocket, type RendezvousServer } from './protocol.js'

interface Entry {
  address: string
  /** Connection that holds the address: it is not told about itself. */
  ownerId: string
}

export class Discovery {
  /** Addresses in announcement order; `[0, cursor)` have been announced this round. */
  private readonly entries: Entry[] = []
  private readonly positions = new Map<string, number>()
  private cursor = 0
  /** Fractional announcements owed, carried from tick to tick. */
  private credit = 0
  private lastTick = 0
  private timer: NodeJS.Timeout | undefined
  private readonly tickMs: number
  /** `ws-peer` messages delivered to connections since start. */
  sent = 0

  constructor (
    private readonly io: RendezvousServer,
    private readonly intervalMs: number,
    private readonly onAnnounced: (deliveries: number) => void = () => {}
  ) {
    this.tickMs = Math.min(DISCOVERY_TICK_MAX_MS, Math.max(DISCOVERY_TICK_MIN_MS, Math.floor(intervalMs / 100)))
  }

  /** Addresses being announced. */
  get size (): number {
    return this.entries.length
  }

  /** Connections that receive announcements. */
  get listeners (): number {
    return this.io.sockets.adapter.rooms.get(JOINED_ROOM)?.size ?? 0
  }

  /** The connection now holds an address: it hears about the others. */
  subscribe (socket: PeerSocket): void {
    void socket.join(JOINED_ROOM)
  }

  /** The connection holds no address any more. */
  unsubscribe (socket: PeerSocket): void {
    void socket.leave(JOINED_ROOM)
  }

  /** Announces `address` now, then every interval until `remove`. */
  add (address: string, ownerId: string): void {
    if (this.positions.has(address)) this.remove(address)
    this.announce(address, ownerId)
    this.positions.set(address, this.entries.length)
    this.entries.push({ address, ownerId })
    if (this.timer === undefined) {
      this.lastTick = Date.now()
      this.credit = 0
      this.timer = setInterval(() => { this.tick() }, this.tickMs)
    }
  }

  /** Stops announcing `address`. */
  remove (address: string): void {
    let at = this.positions.get(address)
    if (at === undefined) return
    // keep the announced and the waiting parts of the round apart
    if (at < this.cursor) {
      this.cursor--
      this.swap(at, this.cursor)
      at = this.cursor
    }
    this.swap(at, this.entries.length - 1)
    this.entries.pop()
    this.positions.delete(address)
    if (this.entries.length === 0) this.stopTimer()
  }

  stop (): void {
    this.stopTimer()
    this.entries.length = 0
    this.positions.clear()
    this.cursor = 0
  }

  private announce (address: string, ownerId: string): void {
    const room = this.io.sockets.adapter.rooms.get(JOINED_ROOM)
    if (room === undefined) return
    const recipients = room.size - (room.has(ownerId) ? 1 : 0)
    if (recipients === 0) return
    this.io.to(JOINED_ROOM).except(ownerId).emit(EVENTS.PEER, address)
    this.sent += recipients
    this.onAnnounced(recipients)
  }

  private tick (): void {
    const now = Date.now()
    const total = this.entries.length
    this.credit += total * (now - this.lastTick) / this.intervalMs
    this.lastTick = now
    let due = Math.min(total, Math.floor(this.credit))
    this.credit -= due
    // never owe more than one round: after a stall, catch up at most once
    if (this.credit > total) this.credit = total
    while (due-- > 0) {
      if (this.cursor >= this.entries.length) this.cursor = 0
      const entry = this.entries[this.cursor++]
      if (entry !== undefined) this.announce(entry.address, entry.ownerId)
    }
  }

  private swap (i: number, j: number): void {
    if (i === j) return
    const a = this.entries[i] as Entry
    const b = this.entries[j] as Entry
    this.entries[i] = b
    this.entries[j] = a
    this.positions.set(b.address, i)
    this.positions.set(a.address, j)
  }

  private stopTimer (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}
