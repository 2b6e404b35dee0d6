/**
 * webrtc-star in cluster mode: two CLI nodes on one real redis-server behind
 * a round-robin TCP balancer (so that every peer's address names one public
 * host and port, as behind a cluster's load balancer, and the peers land on
 * different nodes). A real webrtc-star peer on one node finds and dials a
 * real peer on the other over WebRTC, its offer and the answer passed between
 * the nodes; an offer no node can deliver comes back with the error; and the
 * two kinds of peers stay apart across nodes too.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/protocol.js'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client } from './helpers/clients.js'
import { addressOf, randomPeerId } from './helpers/keys.js'
import { sampleOr, scrape, untilScraped } from './helpers/metrics.js'
import { startProxy, type TcpProxy } from './helpers/proxy.js'
import { NO_REDIS, startRedis } from './helpers/redis.js'
import { PATIENCE_MS, startCli, type CliServer } from './helpers/server.js'
import { until } from './helpers/wait.js'
import { roundTrip, starPeer, webrtcStarAddress, type StarPeer } from './helpers/webrtc-star.js'

const REFRESH_MS = 300
const RELAYED = { result: 'relayed' }

describe('webrtc-star across two nodes on one Redis', { skip: NO_REDIS }, () => {
  const cleanup = new Cleanup()
  const nodes: CliServer[] = []
  let proxy: TcpProxy

  before(async () => {
    const redis = await startRedis()
    cleanup.add(async () => { await redis.kill() })
    for (let i = 0; i < 2; i++) {
      const node = await startCli([`--redis=${redis.url}`, '--disableCryptoChallenge', `--refreshPeerListIntervalMS=${REFRESH_MS}`, '--clusterNodeTimeoutMS=3000'])
      cleanup.add(async () => { await node.stop('SIGKILL') })
      nodes.push(node)
    }
    await Promise.all(nodes.map(async (node) => await untilScraped(node.uri, (m) => sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN) === 2,
      'the node sees a cluster of two', (m) => `it sees ${sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN)}`, PATIENCE_MS)))
    proxy = await startProxy(nodes.map((node) => node.port))
    cleanup.add(async () => { await proxy.stop() })
  })
  after(async () => { await cleanup.run() })

  it('a 7.0.0 peer on one node and a 0.20.8 peer on the other discover each other and connect over WebRTC both ways, signalled between the nodes', async () => {
    const peers: StarPeer[] = []
    try {
      peers.push(await starPeer('7.0.0', proxy.port))
      await until(() => proxy.connectionsPerBackend()[0] === 1, 'the first peer connects to the first node')
      peers.push(await starPeer('0.20.8', proxy.port))
      await until(() => proxy.connectionsPerBackend()[1] === 1, 'the second peer connects to the second node')
      const [a, b] = peers as [StarPeer, StarPeer]
      await Promise.all([a.discovers(b.address), b.discovers(a.address)])
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const before = await Promise.all(nodes.map(async (node) => sampleOr(await scrape(node.uri), 'rendezvous_webrtc_star_signals_total', RELAYED, 0)))
        const connection = await from.dial(to.address)
        const bytes = randomBytes(64 * 1024)
        const back = await roundTrip(connection, bytes)
        assert.equal(back.length, bytes.length, `${from.client} → ${to.client}: as many bytes came back`)
        assert.ok(back.equals(bytes), `${from.client} → ${to.client}: the echo is byte-exact`)
        await connection.close()
        // the offer went through the dialer's node, the answer through the listener's
        const relayed = await Promise.all(nodes.map(async (node, i) => sampleOr(await scrape(node.uri), 'rendezvous_webrtc_star_signals_total', RELAYED, 0) - (before[i] ?? 0)))
        assert.ok(relayed.every((n) => n >= 1), `signals relayed by each node: ${relayed.join(', ')}`)
      }
    } finally {
      await Promise.all(peers.map(async (p) => { await p.close() }))
    }
  })

  it('an offer for an address no node holds comes back with \'peer is not available\'', async () => {
    const client = await connect(nodes[0]?.uri ?? '', 'v4', 'websocket', { path: '/socket.io-next/' })
    try {
      const address = webrtcStarAddress(proxy.port, randomPeerId())
      const [err] = await client.request('ss-join', address)
      assert.equal(err, null)
      const back = client.next('ws-handshake')
      client.emit('ss-handshake', { intentId: 'nobody', srcMultiaddr: address, dstMultiaddr: webrtcStarAddress(proxy.port, randomPeerId()), signal: { type: 'offer', sdp: '' } })
      const [offer] = await back as [Record<string, unknown>]
      assert.equal(offer.intentId, 'nobody')
      assert.equal(offer.err, ERRORS.PEER_NOT_AVAILABLE)
    } finally {
      await client.close()
    }
  })

  it('announces each kind to its own kind only, across the nodes too', async () => {
    const clients: Client[] = []
    try {
      // on each node, a websocket-star peer (2.x on /socket.io) and a webrtc-star peer (4.x on /socket.io-next)
      const joined: Array<{ client: Client, address: string }> = []
      for (const node of nodes) {
        for (const star of ['websocket-star', 'webrtc-star'] as const) {
          const client = star === 'webrtc-star'
            ? await connect(node.uri, 'v4', 'websocket', { path: '/socket.io-next/' })
            : await connect(node.uri, 'v2')
          clients.push(client)
          const address = star === 'webrtc-star' ? webrtcStarAddress(proxy.port, randomPeerId()) : addressOf(randomPeerId(), proxy.port)
          const [err] = await (star === 'webrtc-star' ? client.request('ss-join', address) : client.request('ss-join', address, ''))
          assert.equal(err, null, address)
          joined.push({ client, address })
        }
      }
      const [wsA, rtcA, wsB, rtcB] = joined as [typeof joined[number], typeof joined[number], typeof joined[number], typeof joined[number]]
      // each hears of its own kind on the other node…
      await Promise.all([wsA.client.discovers(wsB.address), wsB.client.discovers(wsA.address), rtcA.client.discovers(rtcB.address), rtcB.client.discovers(rtcA.address)])
      // …and of no peer of the other kind, here or there, after several rounds
      const rounds = wsA.client.peerEvents.length
      await until(() => wsA.client.peerEvents.length >= rounds + 3, 'three more announcements')
      for (const { client, address } of joined) {
        const kind = address.includes('/p2p-webrtc-star') ? 'webrtc-star' : 'websocket-star'
        const foreign = client.peerEvents.filter((a) => a.includes('/p2p-webrtc-star') !== (kind === 'webrtc-star'))
        assert.deepEqual(foreign, [], `a ${kind} peer heard of no other kind`)
      }
    } finally {
      await Promise.all(clients.map(async (c) => { await c.close() }))
    }
  })
})
