/**
 * Discovery: every joined address is announced (`ws-peer`) to every other
 * joined connection at once, then again every refresh interval while it stays
 * joined.
 *
 * One scheduler serves all addresses. New joins are announced within a few
 * milliseconds, many joins in one batch: a batch costs one write per
 * listening connection whatever its size, so the wait grows with the number
 * of listeners (FRESH_DELAY_PER_LISTENER_MS) to keep those writes from
 * eating the CPU while peers join fast. Refreshes come from a
 * round-robin list: every tick (at most 100 ms apart) announces the slice that
 * is due, so a round is spread evenly over the interval instead of bursting.
 * Each tick's announcements go out as one batch (see fanout.ts).
 *
 * The announcement budget: deliveries per second are capped at
 * `maxAnnouncementsPerSecond`. A refresh round costs peers × (peers − 1)
 * deliveries, so when that would exceed the budget the effective refresh
 * interval stretches to fit it. New joins come first: they may run the
 * budget into debt, which the refreshes then repay.
 *
 * Each transport's peers hear the addresses of their own transport only
 * (websocket-star or webrtc-star): an announcement costs one delivery per
 * other listener of its transport, and one budget covers both.
 *
 * In cluster mode each node announces the addresses it holds, to its own
 * peers and, through `otherNodes`, to the other nodes, which deliver them to
 * theirs (`deliver`). The budget then counts the listeners of every node.
 */
import { DISCOVERY_BUDGET_BURST_SECONDS, DISCOVERY_FRESH_DELAY_MIN_MS, DISCOVERY_FRESH_DELAY_PER_LISTENER_MS, DISCOVERY_TICK_MAX_MS, DISCOVERY_TICK_MIN_MS } from './constants.js'
import type { Announcement, Announcer } from './fanout.js'
import { STARS, starOf, type PeerSocket, type Star } from './protocol.js'

interface Entry extends Announcement {
  /** Still to be announced as a new join. */
  fresh: boolean
}

export interface DiscoveryConfig {
  refreshPeerListIntervalMS: number
  maxAnnouncementsPerSecond: number
}

/** Cluster mode: the peers of the other nodes. */
export interface OtherNodes {
  /** Connections hearing announcements of `star` there. */
  listeners: (star: Star) => number
  /** Hands a batch of this node's addresses to them; the first `fresh` are new joins. */
  announce: (addresses: string[], fresh: number) => void
}

export interface DiscoveryComponents {
  /** Writes each batch to this node's peers, and knows who hears them. */
  announcer: Announcer
  /** Told after each slice of a batch: deliveries, and those skipped for peers not reading. */
  announced?: (deliveries: number, dropped: number) => void
  /** Cluster mode only. */
  otherNodes?: OtherNodes
}

export class Discovery {
  /** Addresses in announcement order; `[0, cursor)` have been announced this round. */
  private readonly entries: Entry[] = []
  private readonly positions = new Map<string, number>()
  /** Entries of each transport. */
  private readonly counts: Record<Star, number> = { 'websocket-star': 0, 'webrtc-star': 0 }
  private cursor = 0
  /** Refresh announcements owed, carried from tick to tick. */
  private credit = 0
  /** Deliveries the budget allows now; negative while new joins are repaid. */
  private tokens = 0
  private lastTick = 0
  /** The next tick, and when it is due. */
  private timer: NodeJS.Timeout | undefined
  private dueAt = 0
  /** New joins to announce, oldest first, from `freshHead` on. */
  private fresh: Entry[] = []
  private freshHead = 0
  private readonly tickMs: number
  private delivered = 0
  /** The refresh interval in force, stretched by the budget. */
  private intervalMs: number
  private readonly announcer: Announcer
  private readonly announced: (deliveries: number, dropped: number) => void
  private readonly otherNodes: OtherNodes | undefined

  constructor (components: DiscoveryComponents, private readonly config: DiscoveryConfig) {
    this.announcer = components.announcer
    this.announced = components.announced ?? (() => {})
    this.otherNodes = components.otherNodes
    this.tickMs = Math.min(DISCOVERY_TICK_MAX_MS, Math.max(DISCOVERY_TICK_MIN_MS, Math.floor(config.refreshPeerListIntervalMS / 100)))
    this.intervalMs = config.refreshPeerListIntervalMS
  }

  /** The refresh interval in force, stretched by the budget. */
  get effectiveIntervalMs (): number {
    return this.intervalMs
  }

  /** `ws-peer` messages delivered to connections since start. */
  get sent (): number {
    return this.delivered
  }

  /** Addresses being announced. */
  get size (): number {
    return this.entries.length
  }

  /** Connections that receive announcements, of both transports. */
  get listeners (): number {
    return this.listenersOf('websocket-star') + this.listenersOf('webrtc-star')
  }

  /** Connections that receive announcements of `star`. */
  listenersOf (star: Star): number {
    return this.announcer.listenersOf(star)
  }

  /** The connection now holds an address of `star`: it hears about the others of it. */
  subscribe (socket: PeerSocket, star: Star): void {
    this.announcer.subscribe(socket, star)
  }

  /** The connection holds no address of `star` any more. */
  unsubscribe (socket: PeerSocket, star: Star): void {
    this.announcer.unsubscribe(socket, star)
  }

  /** Announces `address` at once, then every interval until `remove`. */
  add (address: string, ownerId: string): void {
    if (this.positions.has(address)) this.remove(address)
    const entry: Entry = { address, ownerId, star: starOf(address), fresh: true }
    this.positions.set(address, this.entries.length)
    this.entries.push(entry)
    this.counts[entry.star]++
    this.fresh.push(entry)
    if (this.timer === undefined) {
      this.lastTick = Date.now()
      this.credit = 0
      this.tokens = this.burst()
    }
    // the new join rides on the next tick, brought forward if need be
    this.schedule(Math.min(this.tickMs, Math.max(DISCOVERY_FRESH_DELAY_MIN_MS, this.listeners * DISCOVERY_FRESH_DELAY_PER_LISTENER_MS)))
  }

  /** Stops announcing `address`. */
  remove (address: string): void {
    let at = this.positions.get(address)
    if (at === undefined) return
    const entry = this.entries[at]
    entry.fresh = false
    this.counts[entry.star]--
    // keep the announced and the waiting parts of the round apart
    if (at < this.cursor) {
      this.cursor--
      this.swap(at, this.cursor)
      at = this.cursor
    }
    this.swap(at, this.entries.length - 1)
    this.entries.pop()
    this.positions.delete(address)
    if (this.entries.length === 0) this.stopTimers()
  }

  /** Up to `count` joined addresses of `star` other than `except`, chosen at random when there are more. */
  sample (count: number, except: string, star: Star): string[] {
    const n = this.entries.length
    const ofStar = this.counts[star] - (this.positions.has(except) && starOf(except) === star ? 1 : 0)
    // all of them when that is few enough (`except` is not always among them: a join asks before it is added)
    if (ofStar <= count) return this.entries.filter((e) => e.star === star && e.address !== except).map((e) => e.address)
    const picked = new Set<number>()
    const chosen: string[] = []
    while (chosen.length < count) {
      const i = Math.floor(Math.random() * n)
      if (picked.has(i)) continue
      picked.add(i)
      const { address, star: itsStar } = this.entries[i]
      if (itsStar === star && address !== except) chosen.push(address)
    }
    return chosen
  }

  stop (): void {
    this.stopTimers()
    this.announcer.stop()
    this.entries.length = 0
    this.positions.clear()
    for (const star of STARS) this.counts[star] = 0
    this.fresh = []
    this.freshHead = 0
    this.cursor = 0
  }

  private burst (): number {
    return this.config.maxAnnouncementsPerSecond * DISCOVERY_BUDGET_BURST_SECONDS
  }

  /** Makes sure a tick comes within `delayMs`: one timer, moved earlier when asked. */
  private schedule (delayMs: number): void {
    const at = Date.now() + delayMs
    if (this.timer !== undefined) {
      if (this.dueAt <= at) return
      clearTimeout(this.timer)
    }
    this.dueAt = at
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.tick()
      if (this.entries.length > 0) this.schedule(this.tickMs)
    }, delayMs)
  }

  private tick (): void {
    // the last batch is still going out: this one waits, and will carry what is due by then
    if (this.announcer.busy) return
    const now = Date.now()
    const elapsed = now - this.lastTick
    this.lastTick = now
    const rate = this.config.maxAnnouncementsPerSecond
    this.tokens = Math.min(this.burst(), this.tokens + rate * elapsed / 1000)
    const total = this.entries.length
    // what one announcement costs: a delivery to every other connection joined with its transport
    const cost = { 'websocket-star': this.costOf('websocket-star'), 'webrtc-star': this.costOf('webrtc-star') }
    // and one of the round, on average
    const roundCost = (this.counts['websocket-star'] * cost['websocket-star'] + this.counts['webrtc-star'] * cost['webrtc-star']) / Math.max(1, total)
    const batch: Announcement[] = []

    // new joins first, into debt if need be, but not beyond one burst of it
    while (this.freshHead < this.fresh.length && this.tokens > -this.burst()) {
      const entry = this.fresh[this.freshHead++]
      if (!entry.fresh) continue
      entry.fresh = false
      batch.push(entry)
      this.tokens -= cost[entry.star]
    }
    if (this.freshHead === this.fresh.length) {
      this.fresh = []
      this.freshHead = 0
    }
    const fresh = batch.length

    // then the refresh round, at the interval the budget allows
    this.intervalMs = Math.max(this.config.refreshPeerListIntervalMS, 1000 * total * roundCost / rate)
    this.credit = Math.min(total, this.credit + total * elapsed / this.intervalMs)
    let due = Math.min(total, Math.floor(this.credit), Math.max(0, Math.floor(this.tokens / roundCost)))
    this.credit -= due
    while (due-- > 0) {
      if (this.cursor >= this.entries.length) this.cursor = 0
      const entry = this.entries[this.cursor++]
      batch.push(entry)
      this.tokens -= cost[entry.star]
    }

    if (batch.length === 0) return
    this.otherNodes?.announce(batch.map((entry) => entry.address), fresh)
    this.deliver(batch, fresh)
  }

  /** Delivers announcements to every peer here but their holders; those of other nodes come with no holder. */
  deliver (batch: readonly Announcement[], fresh: number): void {
    this.announcer.send(batch, fresh, (deliveries, dropped) => {
      this.delivered += deliveries
      this.announced(deliveries, dropped)
    })
  }

  private costOf (star: Star): number {
    return Math.max(1, this.listenersOf(star) - 1 + (this.otherNodes?.listeners(star) ?? 0))
  }

  private swap (i: number, j: number): void {
    if (i === j) return
    const a = this.entries[i]
    const b = this.entries[j]
    this.entries[i] = b
    this.entries[j] = a
    this.positions.set(b.address, i)
    this.positions.set(a.address, j)
  }

  private stopTimers (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}
