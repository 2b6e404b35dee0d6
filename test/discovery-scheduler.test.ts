/**
 * src/discovery.ts on its own: the scheduler that decides which addresses go
 * out in which batch, with a fake announcer (the fan-out's interface) and
 * fake other nodes, on node:test's mock clock. No sockets, no real time:
 * every figure below is what the scheduler must do, tick by tick.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import { DISCOVERY_BUDGET_BURST_SECONDS, DISCOVERY_FRESH_DELAY_MIN_MS, DISCOVERY_FRESH_DELAY_PER_LISTENER_MS, DISCOVERY_TICK_MAX_MS, DISCOVERY_TICK_MIN_MS } from '../src/constants.js'
import { Discovery, type DiscoveryConfig, type OtherNodes } from '../src/discovery.js'
import type { Announcement, Announcer, FanoutReport } from '../src/fanout.js'
import type { PeerSocket, Star } from '../src/protocol.js'

/** One batch handed to the announcer. */
/** An announcement as recorded: its transport is the address's. */
type Announced = Pick<Announcement, 'address' | 'ownerId'>

interface Batch {
  at: number
  batch: Announced[]
  fresh: number
}

/** The fan-out's interface, recording every batch. */
class FakeAnnouncer implements Announcer {
  /** Connections hearing websocket-star announcements, and webrtc-star ones: set by each test. */
  listeners = 0
  webrtcListeners = 0
  /** Whether a batch is still being written: set by a test. */
  writing = false
  /** How many ticks ran: each tick first asks whether a batch is still being written. */
  ticks = 0
  /** What each batch reports: deliveries per announcement, and those dropped. */
  report = { perAnnouncement: 0, dropped: 0 }
  readonly batches: Batch[] = []
  readonly subscribed = new Set<PeerSocket>()
  /** The transport of each subscription, in order. */
  readonly stars: Star[] = []
  stops = 0

  get busy (): boolean {
    this.ticks++
    return this.writing
  }

  listenersOf (star: Star): number {
    return star === 'webrtc-star' ? this.webrtcListeners : this.listeners
  }

  subscribe (socket: PeerSocket, star: Star): void {
    this.subscribed.add(socket)
    this.stars.push(star)
  }

  unsubscribe (socket: PeerSocket): void {
    this.subscribed.delete(socket)
  }

  send (batch: readonly Announcement[], fresh: number, report: FanoutReport): void {
    this.batches.push({ at: Date.now(), batch: batch.map(({ address, ownerId }) => ({ address, ownerId })), fresh })
    report(batch.length * this.report.perAnnouncement, this.report.dropped)
  }

  stop (): void {
    this.stops++
  }

  /** Every announcement since batch `from`, in order. */
  announcements (from = 0): Announced[] {
    return this.batches.slice(from).flatMap((b) => b.batch)
  }

  /** How many times each address was announced since batch `from`. */
  counts (from = 0): Map<string, number> {
    const counts = new Map<string, number>()
    for (const { address } of this.announcements(from)) counts.set(address, (counts.get(address) ?? 0) + 1)
    return counts
  }
}

/** Other nodes of a cluster, recording what they are handed. */
function fakeOtherNodes (listeners: number): OtherNodes & { handed: Array<{ addresses: string[], fresh: number }> } {
  const handed: Array<{ addresses: string[], fresh: number }> = []
  return { handed, listeners: () => listeners, announce: (addresses, fresh) => { handed.push({ addresses: [...addresses], fresh }) } }
}

/** Moves the mock clock on by `ms`, one millisecond at a time, so that every timer sees the time it fires at. */
function advance (ms: number): void {
  for (let i = 0; i < ms; i++) mock.timers.tick(1)
}

const addresses = (count: number, prefix = '/peer'): string[] => Array.from({ length: count }, (_, i) => `${prefix}/${i}`)

/** A scheduler fed by `announcer`; `otherNodes` for cluster mode. */
function discovery (announcer: FakeAnnouncer, config: DiscoveryConfig, otherNodes?: OtherNodes, announced?: (deliveries: number, dropped: number) => void): Discovery {
  return new Discovery({ announcer, ...(otherNodes !== undefined ? { otherNodes } : {}), ...(announced !== undefined ? { announced } : {}) }, config)
}

/** Plenty of budget: the refresh interval is never stretched. */
const UNLIMITED = 1e9

describe('Discovery, the announcement scheduler', () => {
  let running: Discovery[] = []
  const make = (...args: Parameters<typeof discovery>): Discovery => {
    const d = discovery(...args)
    running.push(d)
    return d
  }
  beforeEach(() => { mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }) })
  afterEach(() => {
    for (const d of running) d.stop()
    running = []
    mock.timers.reset()
  })

  it('announces a new join within a few milliseconds; joins that arrive together go out in one batch, with their owners, counted as fresh', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 4
    const d = make(announcer, { refreshPeerListIntervalMS: 60_000, maxAnnouncementsPerSecond: UNLIMITED })
    d.add('/a', 'conn-1')
    d.add('/b', 'conn-1')
    d.add('/c', 'conn-2')
    assert.equal(d.size, 3)
    assert.equal(announcer.batches.length, 0, 'nothing goes out synchronously')
    const wait = Math.max(DISCOVERY_FRESH_DELAY_MIN_MS, 4 * DISCOVERY_FRESH_DELAY_PER_LISTENER_MS)
    advance(wait)
    assert.equal(announcer.batches.length, 1, `one batch within ${wait} ms`)
    const [first] = announcer.batches as [Batch]
    assert.equal(first.fresh, 3)
    assert.deepEqual(first.batch, [{ address: '/a', ownerId: 'conn-1' }, { address: '/b', ownerId: 'conn-1' }, { address: '/c', ownerId: 'conn-2' }])

    // a later join gets a batch of its own, as soon
    d.add('/d', 'conn-3')
    advance(wait)
    assert.equal(announcer.batches.length, 2)
    const second = announcer.batches[1]
    assert.deepEqual(second.batch, [{ address: '/d', ownerId: 'conn-3' }])
    assert.equal(second.fresh, 1)
    // and nothing more until the refresh is due (an interval of a minute)
    advance(1000)
    assert.equal(announcer.batches.length, 2)
  })

  it('waits longer to batch new joins when many connections listen, but never more than one tick', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 10_000
    const intervalMs = 10_000
    const d = make(announcer, { refreshPeerListIntervalMS: intervalMs, maxAnnouncementsPerSecond: UNLIMITED })
    // a tick: a hundredth of the interval, within bounds
    const tickMs = Math.min(DISCOVERY_TICK_MAX_MS, Math.max(DISCOVERY_TICK_MIN_MS, Math.floor(intervalMs / 100)))
    const wait = Math.min(tickMs, Math.max(DISCOVERY_FRESH_DELAY_MIN_MS, 10_000 * DISCOVERY_FRESH_DELAY_PER_LISTENER_MS))
    d.add('/a', 'conn-1')
    advance(wait - 1)
    d.add('/b', 'conn-2')
    assert.equal(announcer.batches.length, 0, `held for ${wait} ms to batch`)
    advance(1)
    assert.equal(announcer.batches.length, 1)
    assert.deepEqual(announcer.announcements().map((x) => x.address), ['/a', '/b'])
    assert.equal(announcer.batches[0]?.fresh, 2)
  })

  it('re-announces every address about once per interval, spread over the interval rather than in a burst', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 30
    const intervalMs = 1000
    const d = make(announcer, { refreshPeerListIntervalMS: intervalMs, maxAnnouncementsPerSecond: UNLIMITED })
    const all = addresses(25)
    for (const [i, address] of all.entries()) d.add(address, `conn-${i}`)
    advance(5)
    assert.equal(announcer.batches.length, 1)
    assert.equal(announcer.batches[0]?.fresh, 25)
    const from = announcer.batches.length
    advance(4 * intervalMs)
    const refreshes = announcer.batches.slice(from)
    for (const b of refreshes) assert.equal(b.fresh, 0, 'refreshes are not fresh')
    const counts = announcer.counts(from)
    for (const address of all) {
      const n = counts.get(address) ?? 0
      assert.ok(n >= 3 && n <= 5, `${address} was re-announced ${n} times in 4 intervals`)
    }
    assert.equal(d.effectiveIntervalMs, intervalMs)
    // 25 addresses per second: no batch carries more than a tick's share (10 ms: a quarter of one), give or take one
    for (const b of refreshes) assert.ok(b.batch.length <= 2, `a batch of ${b.batch.length} refreshes at ${b.at}`)
    // and they keep coming: never more than twice the even spacing (40 ms) between two batches
    const times = [announcer.batches[0].at, ...refreshes.map((b) => b.at)]
    const gaps = times.slice(1).map((t, i) => t - times[i])
    assert.ok(Math.max(...gaps) <= 2 * intervalMs / all.length, `gaps between refresh batches: ${gaps.join(' ')} ms`)
    // the owners go out with every refresh
    for (const { address, ownerId } of announcer.announcements(from)) assert.equal(ownerId, `conn-${all.indexOf(address)}`)
  })

  it('stretches the interval to peers × cost / rate when the budget cannot pay for a round, and stays within the budget', () => {
    const announcer = new FakeAnnouncer()
    // every announcement is delivered to the 10 other listeners
    announcer.listeners = 11
    const cost = 10
    const rate = 200
    const intervalMs = 1000
    const d = make(announcer, { refreshPeerListIntervalMS: intervalMs, maxAnnouncementsPerSecond: rate })
    const all = addresses(40)
    for (const [i, address] of all.entries()) d.add(address, `conn-${i}`)
    assert.equal(d.effectiveIntervalMs, intervalMs, 'nothing computed before the first tick')
    advance(5)
    const stretched = 1000 * all.length * cost / rate
    assert.equal(d.effectiveIntervalMs, stretched)
    // new joins first, into debt, but no deeper than one burst of the budget: the first batch carries what a burst and its debt pay for
    const burst = rate * DISCOVERY_BUDGET_BURST_SECONDS
    const first = announcer.batches[0]
    assert.ok(first.fresh >= burst / cost && first.fresh <= 2 * burst / cost + 1, `${first.fresh} of 40 new joins in the first batch`)
    // the others follow as the budget allows; after a while every one of them went out
    advance(5000)
    assert.deepEqual([...announcer.counts().keys()].sort(), [...all].sort(), 'every new join was announced')

    const from = announcer.batches.length
    const windowMs = 5 * stretched
    advance(windowMs)
    const deliveries = announcer.announcements(from).length * cost
    const allowed = rate * windowMs / 1000
    assert.ok(deliveries <= allowed + rate * 0.2 + cost, `${deliveries} deliveries in ${windowMs} ms at ${rate}/s`)
    assert.ok(deliveries >= 0.8 * allowed, `the budget is used: ${deliveries} deliveries in ${windowMs} ms at ${rate}/s`)
    const counts = announcer.counts(from)
    for (const address of all) {
      const n = counts.get(address) ?? 0
      assert.ok(n >= 4 && n <= 6, `${address} was re-announced ${n} times in 5 stretched intervals`)
    }

    // half the peers gone: a round costs half as much, and the interval shrinks back to what is asked
    for (const address of all.slice(0, 20)) d.remove(address)
    advance(20)
    assert.equal(d.effectiveIntervalMs, Math.max(intervalMs, 1000 * 20 * cost / rate))
  })

  it('puts new joins first when the budget is tight: each is announced at once, and the refreshes yield to keep within the budget', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 11
    const cost = 10
    const rate = 200
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: rate })
    for (const [i, address] of addresses(40).entries()) d.add(address, `conn-${i}`)
    // settled: every join announced, refreshes running at the budget
    advance(5000)
    const from = announcer.batches.length
    const startedAt = Date.now()
    // a new join every 100 ms: half the budget
    const joins = addresses(50, '/new')
    const addedAt = new Map<string, number>()
    for (const [i, address] of joins.entries()) {
      d.add(address, `new-${i}`)
      addedAt.set(address, Date.now())
      advance(100)
    }
    const windowMs = Date.now() - startedAt
    const sent = announcer.batches.slice(from)
    for (const address of joins) {
      const first = sent.find((b) => b.batch.some((x) => x.address === address))
      assert.ok(first !== undefined && first.at - (addedAt.get(address) as number) <= 10, `${address} was announced ${first === undefined ? 'never' : `${first.at - (addedAt.get(address) as number)} ms after its join`}`)
    }
    const deliveries = sent.reduce((n, b) => n + b.batch.length, 0) * cost
    const allowed = rate * windowMs / 1000
    // the budget, plus one burst of it spent in advance and one of debt
    assert.ok(deliveries <= allowed + 2 * rate * 0.2 + cost, `${deliveries} deliveries in ${windowMs} ms at ${rate}/s, new joins included`)
  })

  it('does not stretch the interval while the budget pays for every round', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 11
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: 40 * 10 })
    for (const address of addresses(40)) d.add(address, 'conn')
    advance(50)
    assert.equal(d.effectiveIntervalMs, 1000)
  })

  it('cluster mode: hands every batch to the other nodes, and counts their listeners in what an announcement costs', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 1
    const others = fakeOtherNodes(9)
    const rate = 100
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: rate }, others)
    const all = addresses(20)
    for (const [i, address] of all.entries()) d.add(address, `conn-${i}`)
    advance(3000)
    // one local listener (the holder itself) and 9 elsewhere: each announcement costs 9 deliveries
    assert.equal(d.effectiveIntervalMs, 1000 * all.length * 9 / rate)
    assert.ok(announcer.batches.length > 1)
    assert.deepEqual(others.handed, announcer.batches.map((b) => ({ addresses: b.batch.map((x) => x.address), fresh: b.fresh })))

    // the same node alone: a round costs 20 × 1 deliveries, well within the budget
    const alone = new FakeAnnouncer()
    alone.listeners = 1
    const solo = make(alone, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: rate }, fakeOtherNodes(0))
    for (const [i, address] of all.entries()) solo.add(address, `conn-${i}`)
    advance(20)
    assert.equal(solo.effectiveIntervalMs, 1000)
  })

  it('two transports: an announcement costs a delivery per other listener of its own transport, under one budget', () => {
    const announcer = new FakeAnnouncer()
    // 11 websocket-star listeners (10 others each), 3 webrtc-star ones (2 others each)
    announcer.listeners = 11
    announcer.webrtcListeners = 3
    const rate = 200
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: rate })
    const websocket = addresses(30, '/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/p2p')
    const webrtc = addresses(30, '/ip4/1.2.3.4/tcp/9090/ws/p2p-webrtc-star/p2p')
    for (const [i, address] of [...websocket, ...webrtc].entries()) d.add(address, `conn-${i}`)
    advance(5)
    // a round: 30 × 10 + 30 × 2 deliveries
    assert.equal(d.effectiveIntervalMs, 1000 * (30 * 10 + 30 * 2) / rate)
    advance(10_000)
    assert.deepEqual([...announcer.counts().keys()].sort(), [...websocket, ...webrtc].sort(), 'every address was announced')
    const from = announcer.batches.length
    const windowMs = 5 * d.effectiveIntervalMs
    advance(windowMs)
    const counts = announcer.counts(from)
    let deliveries = 0
    for (const [address, n] of counts) deliveries += n * (websocket.includes(address) ? 10 : 2)
    const allowed = rate * windowMs / 1000
    assert.ok(deliveries <= allowed + rate * 0.2 + 10, `${deliveries} deliveries in ${windowMs} ms at ${rate}/s`)
    assert.ok(deliveries >= 0.8 * allowed, `the budget is used: ${deliveries} deliveries in ${windowMs} ms at ${rate}/s`)
    // both transports refreshed at the same stretched interval
    for (const address of [...websocket, ...webrtc]) {
      const n = counts.get(address) ?? 0
      assert.ok(n >= 4 && n <= 6, `${address} was re-announced ${n} times in 5 stretched intervals`)
    }
  })

  it('two transports: samples list addresses of the asked transport only', () => {
    const d = make(new FakeAnnouncer(), { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    const websocket = addresses(50, '/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/p2p')
    const webrtc = addresses(5, '/ip4/1.2.3.4/tcp/9090/ws/p2p-webrtc-star/p2p')
    for (const [i, address] of [...websocket, ...webrtc].entries()) d.add(address, `conn-${i}`)
    assert.deepEqual(d.sample(10, webrtc[0], 'webrtc-star').sort(), webrtc.slice(1).sort(), 'all four others, however many websocket-star addresses')
    for (let i = 0; i < 50; i++) {
      const picked = d.sample(3, webrtc[0], 'webrtc-star')
      assert.equal(picked.length, 3)
      for (const address of picked) assert.ok(webrtc.includes(address) && address !== webrtc[0], address)
    }
    const sampled = d.sample(10, websocket[0], 'websocket-star')
    assert.equal(sampled.length, 10)
    for (const address of sampled) assert.ok(websocket.includes(address) && address !== websocket[0], address)
    d.remove(webrtc[1])
    assert.deepEqual(d.sample(10, '/joining', 'webrtc-star').sort(), webrtc.filter((a) => a !== webrtc[1]).sort())
  })

  it('stops announcing an address once removed, whether already announced or still waiting to be', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 40
    const intervalMs = 1000
    const d = make(announcer, { refreshPeerListIntervalMS: intervalMs, maxAnnouncementsPerSecond: UNLIMITED })
    const all = addresses(30)
    for (const [i, address] of all.entries()) d.add(address, `conn-${i}`)
    // mid-round: some are refreshed this round already, some not yet
    advance(intervalMs / 2)
    const removed = all.filter((_, i) => i % 3 === 0)
    for (const address of removed) d.remove(address)
    d.remove('/never-added')
    assert.equal(d.size, all.length - removed.length)
    // removed before its first announcement
    d.add('/short-lived', 'conn-x')
    d.remove('/short-lived')
    const from = announcer.batches.length
    advance(3 * intervalMs)
    const counts = announcer.counts(from)
    for (const address of removed) assert.equal(counts.get(address), undefined, `${address} is no longer announced`)
    assert.equal(announcer.counts().get('/short-lived'), undefined, 'an address removed before its announcement is never announced')
    for (const address of all.filter((x) => !removed.includes(x))) {
      const n = counts.get(address) ?? 0
      assert.ok(n >= 2 && n <= 4, `${address} was re-announced ${n} times in 3 intervals`)
    }

    // once nothing is left, nothing ticks any more
    for (const address of all) d.remove(address)
    assert.equal(d.size, 0)
    const ticks = announcer.ticks
    const batches = announcer.batches.length
    advance(3 * intervalMs)
    assert.equal(announcer.ticks, ticks, 'no tick with nothing to announce')
    assert.equal(announcer.batches.length, batches)
  })

  it('announces an address joined again under its new owner only', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 3
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    d.add('/a', 'conn-old')
    d.add('/b', 'conn-b')
    advance(5)
    d.add('/a', 'conn-new')
    assert.equal(d.size, 2)
    const from = announcer.batches.length
    advance(5)
    const rejoined = announcer.batches[from]
    assert.deepEqual(rejoined.batch, [{ address: '/a', ownerId: 'conn-new' }])
    assert.equal(rejoined.fresh, 1)
    advance(3000)
    const owners = announcer.announcements(from).filter((x) => x.address === '/a').map((x) => x.ownerId)
    assert.ok(owners.length >= 3, `announced ${owners.length} times`)
    assert.deepEqual(new Set(owners), new Set(['conn-new']))
  })

  it('holds a batch back while the last one is still being written, then carries what came due meanwhile', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 2
    announcer.writing = true
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    d.add('/a', 'conn-a')
    advance(100)
    assert.ok(announcer.ticks > 1, 'it kept looking')
    assert.equal(announcer.batches.length, 0)
    d.add('/b', 'conn-b')
    advance(50)
    announcer.writing = false
    advance(10)
    assert.equal(announcer.batches.length, 1)
    assert.equal(announcer.batches[0]?.fresh, 2)
    assert.deepEqual(announcer.announcements().slice(0, 2).map((x) => x.address), ['/a', '/b'])
  })

  it('counts what the announcer reports delivered, and tells `announced` of every batch', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 4
    announcer.report = { perAnnouncement: 3, dropped: 1 }
    const told: Array<[number, number]> = []
    const d = make(announcer, { refreshPeerListIntervalMS: 60_000, maxAnnouncementsPerSecond: UNLIMITED }, undefined, (deliveries, dropped) => { told.push([deliveries, dropped]) })
    assert.equal(d.sent, 0)
    d.add('/a', 'conn-a')
    d.add('/b', 'conn-b')
    advance(10)
    d.add('/c', 'conn-c')
    advance(10)
    assert.deepEqual(told, [[6, 1], [3, 1]])
    assert.equal(d.sent, 9)
  })

  it('passes subscriptions to the announcer and reports its listeners', () => {
    const announcer = new FakeAnnouncer()
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    const socket = {} as unknown as PeerSocket
    d.subscribe(socket, 'webrtc-star')
    assert.ok(announcer.subscribed.has(socket))
    assert.deepEqual(announcer.stars, ['webrtc-star'])
    d.unsubscribe(socket, 'webrtc-star')
    assert.equal(announcer.subscribed.size, 0)
    announcer.listeners = 7
    assert.equal(d.listeners, 7)
  })

  it('stop() cancels the timers and the announcer: nothing ticks or goes out afterwards', () => {
    const announcer = new FakeAnnouncer()
    announcer.listeners = 2
    const d = make(announcer, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    for (const address of addresses(10)) d.add(address, 'conn')
    advance(200)
    assert.ok(announcer.batches.length > 1)
    d.stop()
    assert.equal(announcer.stops, 1)
    assert.equal(d.size, 0)
    assert.deepEqual(d.sample(5, '/x', 'websocket-star'), [])
    const ticks = announcer.ticks
    const batches = announcer.batches.length
    advance(5000)
    assert.equal(announcer.ticks, ticks, 'no tick after stop()')
    assert.equal(announcer.batches.length, batches)

    // stopped before its first tick: the new join never goes out
    const early = new FakeAnnouncer()
    const e = make(early, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    e.add('/a', 'conn')
    e.stop()
    advance(1000)
    assert.equal(early.ticks, 0)
    assert.equal(early.batches.length, 0)
  })
})

describe('Discovery.sample', () => {
  const withAddresses = (count: number): { d: Discovery, all: string[] } => {
    const d = new Discovery({ announcer: new FakeAnnouncer() }, { refreshPeerListIntervalMS: 1000, maxAnnouncementsPerSecond: UNLIMITED })
    const all = addresses(count)
    for (const address of all) d.add(address, 'conn')
    return { d, all }
  }
  beforeEach(() => { mock.timers.enable({ apis: ['setTimeout', 'Date'] }) })
  afterEach(() => { mock.timers.reset() })

  /** `picked` has at most `count` distinct addresses, all joined, none of them `except`. */
  const assertSample = (picked: string[], count: number, all: string[], except: string): void => {
    assert.ok(picked.length <= count, `at most ${count}: ${JSON.stringify(picked)}`)
    assert.equal(new Set(picked).size, picked.length, `distinct: ${JSON.stringify(picked)}`)
    assert.ok(!picked.includes(except), `not ${except}: ${JSON.stringify(picked)}`)
    for (const address of picked) assert.ok(all.includes(address), `${address} is joined`)
  }

  it('picks `count` distinct joined addresses other than `except`, at random', () => {
    const { d, all } = withAddresses(10)
    const except = all[0]
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const picked = d.sample(3, except, 'websocket-star')
      assertSample(picked, 3, all, except)
      assert.equal(picked.length, 3)
      for (const address of picked) seen.add(address)
    }
    assert.deepEqual([...seen].sort(), all.slice(1).sort(), 'every other address comes up')
    d.stop()
  })

  it('gives every other address when there are no more than `count` of them', () => {
    const { d, all } = withAddresses(10)
    const except = all[4]
    for (const count of [9, 10, 50]) {
      const picked = d.sample(count, except, 'websocket-star')
      assertSample(picked, count, all, except)
      assert.deepEqual([...picked].sort(), all.filter((x) => x !== except).sort())
    }
    assert.deepEqual(d.sample(0, except, 'websocket-star'), [])
    d.stop()
  })

  it('returns at most `count` when `except` is not joined (the joining address is sampled before it is added)', () => {
    const { d, all } = withAddresses(10)
    for (const count of [3, 9, 10, 11]) {
      const picked = d.sample(count, '/joining', 'websocket-star')
      assertSample(picked, count, all, '/joining')
      assert.equal(picked.length, Math.min(count, all.length), `sample(${count}) of 10 others`)
    }
    d.stop()
  })
})
