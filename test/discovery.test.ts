/**
 * Discovery at scale: the bounded join reply and the announcement budget,
 * seen by real socket.io-client 2.x and 4.x peers.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { connect } from './helpers/clients.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { sample, scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'
import { until } from './helpers/wait.js'

async function joinAll (url: string, count: number): Promise<Peer[]> {
  const peers: Peer[] = []
  for (let i = 0; i < count; i++) peers.push(await joinedPeer(url, { version: i % 2 === 0 ? 'v2' : 'v4' }))
  return peers
}

describe('discovery at scale', () => {
  it('lists a random sample of at most maxPeersInJoinReply peers, and announces the rest by refresh', async () => {
    const server = await startServer({ cryptoChallenge: false, maxPeersInJoinReply: 3, refreshPeerListIntervalMS: 200 })
    const peers = await joinAll(server.url, 6)
    const late = await connect(server.url, 'v2')
    try {
      const address = randomAddress()
      const [err, , listed] = await late.request('ss-join', address, '')
      assert.equal(err, null)
      const list = listed as string[]
      assert.equal(list.length, 3)
      assert.equal(new Set(list).size, 3)
      for (const a of list) assert.ok(peers.some((p) => p.address === a), `${a} is one of the joined peers`)
      // every other peer reaches it through the refresh
      for (const p of peers) await late.discovers(p.address)
    } finally {
      await late.close()
      await Promise.all(peers.map(async (p) => { await p.client.close() }))
      await server.stop()
    }
  })

  it('stretches the refresh interval to stay within maxAnnouncementsPerSecond, and still announces new joins at once', async () => {
    // 8 peers refreshing every 100 ms would need 8 × 7 / 0.1 s = 560 deliveries/s
    const budget = 100
    const server = await startServer({ cryptoChallenge: false, metrics: true, refreshPeerListIntervalMS: 100, maxAnnouncementsPerSecond: budget })
    const peers = await joinAll(server.url, 8)
    try {
      // 8 × 7 deliveries per round at 100 per second: a round every 560 ms
      // (the figure of the first tick after the last join: new joins wait a few ms to be batched)
      await until(() => Math.abs(server.stats().refreshIntervalMS - 560) < 1, `the interval stretches to 560 ms (now ${server.stats().refreshIntervalMS} ms)`)
      const m = await scrape(server.url)
      assert.ok(Math.abs(sample(m, 'rendezvous_discovery_refresh_interval_seconds') - 0.56) < 0.001)

      // over any window, deliveries stay within the budget plus one burst (0.2 s of budget)
      const before = server.stats().announcementsSent
      const startedAt = Date.now()
      await until(() => Date.now() - startedAt >= 1500 && server.stats().announcementsSent > before, 'a window of deliveries')
      const seconds = (Date.now() - startedAt) / 1000
      const delivered = server.stats().announcementsSent - before
      assert.ok(delivered <= budget * seconds + budget * 0.2 + 8 * 7, `${delivered} deliveries in ${seconds} s`)

      // while the budget stretches the refresh, a new join is still announced to everyone
      const newcomer = await connect(server.url, 'v4')
      const address = randomAddress()
      const heard = Promise.all(peers.map(async (p) => { await p.client.discovers(address) }))
      await newcomer.request('ss-join', address, '')
      await heard
      await newcomer.close()
    } finally {
      await Promise.all(peers.map(async (p) => { await p.client.close() }))
      await server.stop()
    }
  })
})
