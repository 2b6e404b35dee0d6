/**
 * Cluster mode (`--redis`): three CLI processes sharing one real
 * redis-server, spoken to by real socket.io-client 2.x and 4.x. Discovery and
 * join acks across nodes, dials and relayed streams across nodes, address
 * takeover across nodes, a node killed with SIGKILL and one stopped with
 * SIGTERM, Redis stopped and restarted under running nodes, and the topology
 * of docker-compose.yml: three nodes behind a round-robin TCP proxy.
 *
 * Each describe block starts its own Redis and nodes and shares them between
 * its tests; the tests that kill or stop a node come last in their block.
 * Every node's stderr and Redis's log are kept in test-artifacts/cluster/.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/index.js'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client, type ClientVersion, type Transport } from './helpers/clients.js'
import { health, type Health } from './helpers/http.js'
import { joinWithChallenge, joinedPeer, type Peer } from './helpers/join.js'
import { addressOf, libp2pIdentity, randomAddress } from './helpers/keys.js'
import { sample, sampleOr, scrape, untilScraped as untilScrapedUrl, type Scraped } from './helpers/metrics.js'
import { startProxy } from './helpers/proxy.js'
import { NO_REDIS, startRedis, type RedisProcess } from './helpers/redis.js'
import { PATIENCE_MS, startCli, type CliServer } from './helpers/server.js'
import { STREAM, makeChunks, relay, send, sha256, type Relayed } from './helpers/streams.js'
import { eventually, until, within } from './helpers/wait.js'

const KiB = 1024
const MiB = 1024 * KiB
const ARTIFACTS = new URL('../../test-artifacts/cluster/', import.meta.url)

/** Short, so a killed node is purged within the test; a heartbeat (a third of it) still has a second to run on a loaded machine. */
const NODE_TIMEOUT_MS = 3000
/** The documented bound for a killed node: its addresses are purged within the timeout plus a third of it. */
const PURGE_BOUND_MS = NODE_TIMEOUT_MS + NODE_TIMEOUT_MS / 3
/** What a loaded 2-core machine may add to that bound: late timers, slow scrapes. */
const PURGE_SLACK_MS = 2000
const REFRESH_MS = 300
const DIAL_TIMEOUT_MS = 3000
/** How `eventually` probes a node here: every 100 ms, the last answer shown on timeout. */
const SLOW_POLL = { everyMs: 100, seen: (value: unknown) => `last seen: ${JSON.stringify(value)}` }


/** Runs `body` with a cleanup of its own, run whatever happens. */
async function cleaning (body: (cleanup: Cleanup) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup()
  try {
    await body(cleanup)
  } finally {
    await cleanup.run()
  }
}

interface Cluster {
  redis: RedisProcess
  nodes: CliServer[]
}

/** The last lines a node printed, for failure messages. */
function tail (node: CliServer, lines = 15): string {
  return node.output().stderr.trimEnd().split('\n').slice(-lines).join('\n')
}

/**
 * Starts a Redis and three nodes on it with `args`, each registered with
 * `cleanup` as soon as it runs; their logs go to test-artifacts/cluster/ at
 * cleanup.
 */
async function startCluster (cleanup: Cleanup, label: string, args: string[]): Promise<Cluster> {
  const redis = await startRedis()
  const nodes: CliServer[] = []
  cleanup.add(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    await writeFile(new URL(`${label}-redis.log`, ARTIFACTS), redis.log())
    await Promise.all(nodes.map(async (node, i) => { await writeFile(new URL(`${label}-node${i}.log`, ARTIFACTS), `${node.uri}\n${node.output().stderr}`) }))
  })
  cleanup.add(async () => { await redis.kill() })
  const started = await Promise.allSettled([0, 1, 2].map(async () => {
    // rendezvous:cluster: Redis errors, nodes gone and lost messages, in the logs kept
    const node = await startCli([`--redis=${redis.url}`, ...args], { DEBUG: 'rendezvous:cluster' })
    cleanup.add(async () => { await node.stop('SIGKILL') })
    return node
  }))
  for (const result of started) {
    if (result.status === 'rejected') throw result.reason
    nodes.push(result.value)
  }
  return { redis, nodes }
}

/** Resolves with the first scrape of `node` that satisfies `condition`; scrapes every 50 ms. */
async function untilScraped (node: CliServer, condition: (m: Scraped) => boolean, what: string, patienceMs = PATIENCE_MS): Promise<Scraped> {
  return await untilScrapedUrl(node.uri, condition, `${what} on ${node.uri}`, (m) => {
    const figures = ['rendezvous_cluster_up', 'rendezvous_cluster_nodes', 'rendezvous_peers', 'rendezvous_relayed_streams']
      .map((name) => `${name}=${sampleOr(m, name, {}, NaN)}`).join(' ')
    return `${figures}; its stderr ends:\n${tail(node)}`
  }, patienceMs, 50)
}

/** Every node connected to Redis and seeing all three. */
async function untilFormed (nodes: CliServer[]): Promise<void> {
  await Promise.all(nodes.map(async (node) => await untilScraped(node,
    (m) => sampleOr(m, 'rendezvous_cluster_up', {}, NaN) === 1 && sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN) === nodes.length, `the node sees a cluster of ${nodes.length}`)))
}

/** No relayed stream left on any of `nodes`. */
async function untilRelaysFreed (nodes: CliServer[]): Promise<void> {
  await Promise.all(nodes.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_relayed_streams', {}, NaN) === 0, 'no relayed stream is left')))
}

/** `/health` of `node` says it serves in a whole cluster: 200, ok, Redis up, `nodes` nodes; resolves with its body. */
async function assertClustered (node: CliServer, nodes: number): Promise<Health> {
  const { status, body } = await health(node.uri)
  assert.equal(status, 200)
  assert.equal(body.status, 'ok')
  assert.equal(body.cluster?.redis, 'up')
  assert.equal(body.cluster.nodes, nodes)
  return body
}

interface Joined extends Peer {
  /** What a join of `address` sends: '' without the crypto challenge, else the verified signature. */
  data: string
}

/** A connected client, closed at cleanup. */
async function open (cleanup: Cleanup, url: string, version: ClientVersion = 'v2', transport: Transport = 'websocket'): Promise<Client> {
  const client = await connect(url, version, transport)
  cleanup.add(async () => { await client.close() })
  return client
}

/** Connects and joins a random address without the crypto challenge, closed at cleanup; returns the peer and what its join's ack listed. */
async function joinPeer (cleanup: Cleanup, url: string, version: ClientVersion = 'v2', transport: Transport = 'websocket'): Promise<Joined & { listed: string[] }> {
  const peer = await joinedPeer(url, { version, transport, opened: (client) => { cleanup.add(async () => { await client.close() }) } })
  return { ...peer, data: '' }
}

/** The addresses a join's ack lists now, seen by `peer` joining its address again on the same connection. */
async function listedTo (peer: Joined): Promise<string[]> {
  const [err, , listed] = await peer.client.request('ss-join', peer.address, peer.data)
  assert.equal(err, null, `re-join of ${peer.address}`)
  return listed as string[]
}

/** How many `ws-peer` announcements of `address` `peer` has heard. */
function heard (peer: Peer, address: string, since = 0): number {
  return peer.client.peerEvents.slice(since).filter((a) => a === address).length
}

/**
 * `promise`, or a rejection naming the peer as soon as one of `peers` is
 * disconnected (a client that cannot parse what it got closes with
 * "parse error"): a transfer then fails at once instead of at its time limit.
 */
async function unlessDropped<T> (promise: Promise<T>, peers: Record<string, Peer>): Promise<T> {
  const listeners: Array<[Peer, (reason: string) => void]> = []
  const dropped = new Promise<never>((_resolve, reject) => {
    for (const [who, peer] of Object.entries(peers)) {
      const listener = (reason: string): void => { reject(new Error(`the ${who} was disconnected: ${reason}`)) }
      peer.client.socket.on('disconnect', listener)
      listeners.push([peer, listener])
    }
  })
  try {
    return await Promise.race([promise, dropped])
  } finally {
    for (const [peer, listener] of listeners) peer.client.socket.off('disconnect', listener)
  }
}

/** Relays `there` forward and `back` back over `r`, ending the back stream with `end`; checks both arrive byte-exact. */
async function exchange (dialer: Joined, listener: Joined, r: Relayed, there: Buffer[], back: Buffer[], end: true | string = true): Promise<void> {
  await within(r.dialerMaySend, 'the server accepts the dialer\'s stream')
  send(dialer.client, r.forward, there)
  await within(r.listenerMaySend, 'the server accepts the listener\'s stream')
  send(listener.client, r.back, back, end)
  const peers = { dialer, listener }
  const atListener = await within(unlessDropped(r.atListener.done, peers), 'the forward stream')
  const atDialer = await within(unlessDropped(r.atDialer.done, peers), 'the back stream')
  const bytes = (chunks: Buffer[]): number => chunks.reduce((n, c) => n + c.length, 0)
  assert.deepEqual(atListener, { bytes: bytes(there), chunks: there.length, sha256: sha256(there), end: true })
  assert.deepEqual(atDialer, { bytes: bytes(back), chunks: back.length, sha256: sha256(back), end })
}

describe('three nodes on one Redis', { skip: NO_REDIS }, () => {
  const processes = new Cleanup()
  const args = [
    '--disableCryptoChallenge',
    `--clusterNodeTimeoutMS=${NODE_TIMEOUT_MS}`,
    `--refreshPeerListIntervalMS=${REFRESH_MS}`,
    `--dialTimeoutMS=${DIAL_TIMEOUT_MS}`
  ]
  let redis: RedisProcess
  let nodes: CliServer[] = []
  const url = (i: number): string => nodes[i].uri

  before(async () => {
    ({ redis, nodes } = await startCluster(processes, 'nodes', args))
    await untilFormed(nodes)
  })
  after(async () => { await processes.run() })

  it('every node reports the cluster: /health ok with Redis up and three nodes, rendezvous_cluster_up 1, rendezvous_cluster_nodes 3', async () => {
    const ids = new Set<string>()
    for (const node of nodes) {
      const body = await assertClustered(node, 3)
      assert.equal(typeof body.cluster?.node, 'string')
      ids.add(body.cluster?.node as string)
      const m = await scrape(node.uri)
      assert.equal(m.families.get('rendezvous_cluster_up')?.type, 'GAUGE')
      assert.equal(m.families.get('rendezvous_cluster_nodes')?.type, 'GAUGE')
      assert.equal(sample(m, 'rendezvous_cluster_up'), 1)
      assert.equal(sample(m, 'rendezvous_cluster_nodes'), 3)
    }
    assert.equal(ids.size, 3, 'each node has an id of its own')
  })

  it('join acks list the peers of every node, and 2.x and 4.x peers on websocket and polling hear of each other across nodes', async () => {
    await cleaning(async (cleanup) => {
      const kinds: Array<[node: number, version: ClientVersion, transport: Transport]> = [[0, 'v2', 'websocket'], [1, 'v4', 'websocket'], [2, 'v2', 'polling'], [1, 'v4', 'polling']]
      const peers: Joined[] = []
      for (const [node, version, transport] of kinds) {
        const p = await joinPeer(cleanup, url(node), version, transport)
        for (const earlier of peers) assert.ok(p.listed.includes(earlier.address), `the join ack of a ${version} ${transport} peer on node ${node} lists ${earlier.address}`)
        assert.ok(!p.listed.includes(p.address), 'a join ack does not list the joining address')
        peers.push(p)
      }
      for (const a of peers) {
        for (const b of peers) if (a !== b) await a.client.discovers(b.address)
      }
      for (const p of peers) assert.ok(!p.client.peerEvents.includes(p.address), 'nobody is told about itself')

      // announced again every refresh interval across nodes
      const [p0, p1, p2, p3] = peers as [Joined, Joined, Joined, Joined]
      const since = p0.client.peerEvents.length
      await until(() => heard(p0, p2.address, since) >= 3, 'three more announcements of the node-2 peer on node 0')

      // an address left, and one whose connection closed, are gone from every node
      p1.client.emit('ss-leave', p1.address)
      await p3.client.close()
      await eventually(async () => await listedTo(p2), (listed) => !listed.includes(p1.address) && !listed.includes(p3.address) && listed.includes(p0.address),
        'a join ack on node 2 lists neither the address left on node 1 nor the one whose connection closed', SLOW_POLL)
      // and no longer announced. Redis delivers publications in the order it
      // took them, so once an announcement published after the release has
      // arrived (the second refresh of the node-0 peer since the ack), no
      // stale one can follow; then two more refresh rounds go by
      const sinceAck = p2.client.peerEvents.length
      await until(() => heard(p2, p0.address, sinceAck) >= 2, 'two announcements of the node-0 peer since the ack')
      const clean = p2.client.peerEvents.length
      await until(() => heard(p2, p0.address, clean) >= 2, 'two more announcements of the node-0 peer')
      assert.equal(heard(p2, p1.address, clean), 0, 'the left address is no longer announced')
      assert.equal(heard(p2, p3.address, clean), 0, 'the disconnected address is no longer announced')
    })
  })

  it('dials across nodes answer as on one node: not authorized, peer not found, the listener\'s refusal, its disconnect, its silence', async () => {
    await cleaning(async (cleanup) => {
      const a = await joinPeer(cleanup, url(0), 'v2')
      const b = await joinPeer(cleanup, url(1), 'v4')
      const c = await joinPeer(cleanup, url(2), 'v2')
      // from an address held on another node
      assert.deepEqual(await a.client.request('ss-dial', b.address, c.address, randomUUID()), [ERRORS.NOT_AUTHORIZED])
      // to an address no node holds
      assert.deepEqual(await a.client.request('ss-dial', a.address, randomAddress(), randomUUID()), [ERRORS.PEER_NOT_FOUND])

      // the listener on node 1 refuses
      const refuse = (_id: string, _from: string, answer: (err: string) => void): void => { answer('busy, try later') }
      b.client.socket.on('ss-incomming', refuse)
      assert.deepEqual(await a.client.request('ss-dial', a.address, b.address, randomUUID()), ['busy, try later'])
      b.client.socket.off('ss-incomming', refuse)

      // the listener on node 2 disconnects before it answers
      const d = await joinPeer(cleanup, url(2), 'v4')
      const incoming = d.client.next('ss-incomming')
      const gone = a.client.request('ss-dial', a.address, d.address, randomUUID())
      const [, from] = await incoming
      assert.equal(from, a.address, 'the listener on node 2 hears who dials it from node 0')
      await d.client.close()
      assert.deepEqual(await gone, [ERRORS.PEER_NOT_FOUND])

      // the listener on node 2 accepts the stream but never answers
      const dialId = randomUUID()
      const heardDial = c.client.next('ss-incomming')
      const ended = c.client.next(`${STREAM}error.${dialId}.dialer`)
      const startedAt = Date.now()
      const silent = a.client.request('ss-dial', a.address, c.address, dialId)
      await heardDial
      c.client.emit(`${STREAM}accept.${dialId}.dialer`)
      assert.deepEqual(await silent, [ERRORS.DIAL_TIMEOUT])
      assert.ok(Date.now() - startedAt >= DIAL_TIMEOUT_MS - 100, `answered 'Dial timeout' after ${Date.now() - startedAt} ms, before the ${DIAL_TIMEOUT_MS} ms dial timeout`)
      assert.deepEqual(await ended, [ERRORS.DIAL_TIMEOUT], 'the listener\'s stream ends with the timeout')

      await untilRelaysFreed(nodes)
    })
  })

  for (const [dialerVersion, dialerNode, listenerVersion, listenerNode] of [['v2', 0, 'v2', 1], ['v2', 1, 'v4', 2], ['v4', 2, 'v2', 0], ['v4', 0, 'v4', 2]] as const) {
    it(`relays both directions byte-exact from socket.io-client ${dialerVersion} on node ${dialerNode} to ${listenerVersion} on node ${listenerNode}, and the end's message`, async () => {
      await cleaning(async (cleanup) => {
        const a = await joinPeer(cleanup, url(dialerNode), dialerVersion)
        const b = await joinPeer(cleanup, url(listenerNode), listenerVersion)
        const r = await relay(a.client, a.address, b.client, b.address)
        await exchange(a, b, r, [...makeChunks(50, 3000)], [...makeChunks(20, 7)], 'listener says goodbye')
        await untilRelaysFreed(nodes)
      })
    })
  }

  it('echoes 16 MiB across nodes: both directions byte-exact and in order (SHA-256 compared), and the relay is freed on both nodes', async () => {
    await cleaning(async (cleanup) => {
      const a = await joinPeer(cleanup, url(0), 'v2')
      const b = await joinPeer(cleanup, url(2), 'v4')
      const r = await relay(a.client, a.address, b.client, b.address)
      const size = 64 * KiB
      const count = 256
      // the listener sends back every chunk as it arrives, once the server lets it send
      let listenerMaySend = false
      const held: Buffer[] = []
      r.atListener.onChunk = (chunk) => {
        if (listenerMaySend) b.client.emit(`${STREAM}queue.${r.back}`, chunk)
        else held.push(chunk)
      }
      const echoEnded = (async () => {
        await within(r.listenerMaySend, 'the server accepts the listener\'s stream')
        for (const chunk of held.splice(0)) b.client.emit(`${STREAM}queue.${r.back}`, chunk)
        listenerMaySend = true
        const forward = await r.atListener.done
        b.client.emit(`${STREAM}error.${r.back}`, true)
        return forward
      })()
      await within(r.dialerMaySend, 'the server accepts the dialer\'s stream')
      const startedAt = Date.now()
      send(a.client, r.forward, makeChunks(count, size))
      const expected = { bytes: 16 * MiB, chunks: count, sha256: sha256(makeChunks(count, size)), end: true }
      const peers = { dialer: a, listener: b }
      assert.deepEqual(await within(unlessDropped(echoEnded, peers), '16 MiB at the listener on node 2', 60_000), expected)
      assert.deepEqual(await within(unlessDropped(r.atDialer.done, peers), '16 MiB echoed to the dialer on node 0', 60_000), expected)
      console.log(`# 16 MiB echoed across nodes in ${Date.now() - startedAt} ms`)
      await untilRelaysFreed(nodes)
    })
  })

  it('a join ack lists a random sample of every node\'s addresses when there are more than maxPeersInJoinReply', async () => {
    await cleaning(async (cleanup) => {
      const peers: Peer[] = []
      for (const node of [0, 1, 2, 0, 1]) peers.push(await joinPeer(cleanup, url(node), node % 2 === 0 ? 'v2' : 'v4'))
      const addresses = new Set(peers.map((p) => p.address))
      // a fourth node that lists three addresses at most
      const small = await startCli([`--redis=${redis.url}`, ...args, '--maxPeersInJoinReply=3'], { DEBUG: 'rendezvous:cluster' })
      cleanup.add(async () => { await small.stop('SIGKILL') })
      const joiner = await joinPeer(cleanup, small.uri, 'v4')
      const seen = new Set<string>()
      let listed = joiner.listed
      // 3 of 5 at random: after 30 joins, every one of the five has been listed but with odds of about 1 in 10^11
      for (let joins = 1; joins <= 30 && seen.size < addresses.size; joins++) {
        if (joins > 1) listed = await listedTo(joiner)
        assert.equal(listed.length, 3, `three addresses listed: ${JSON.stringify(listed)}`)
        assert.equal(new Set(listed).size, 3, 'no address listed twice')
        assert.ok(!listed.includes(joiner.address), 'the joining address is not listed')
        for (const address of listed) if (addresses.has(address)) seen.add(address)
      }
      assert.equal(seen.size, addresses.size, 'the samples cover the addresses of nodes 0, 1 and 2')
      // stopped cleanly, so that the last test counts three nodes again
      assert.equal((await small.stop('SIGTERM')).code, 0)
    })
  })

  it('behind a round-robin proxy, as in docker-compose.yml: websocket clients land on different nodes, see each other and relay', async () => {
    await cleaning(async (cleanup) => {
      const proxy = await startProxy(nodes.map((node) => node.port))
      cleanup.add(proxy.stop)
      const a = await joinPeer(cleanup, proxy.url, 'v2', 'websocket')
      const b = await joinPeer(cleanup, proxy.url, 'v4', 'websocket')
      assert.deepEqual(proxy.connectionsPerBackend(), [1, 1, 0], 'one client on node 0, the other on node 1')
      assert.ok(b.listed.includes(a.address), 'the second client\'s join ack lists the first')
      await a.client.discovers(b.address)
      await b.client.discovers(a.address)
      const r = await relay(a.client, a.address, b.client, b.address)
      await exchange(a, b, r, [...makeChunks(4, KiB)], [...makeChunks(3, KiB)])
      await untilRelaysFreed(nodes)
    })
  })

  // last: node 2 does not come back
  it('kill -9 of a node: its peers vanish from the others\' join acks and the streams it shared end on the surviving side, within the node timeout bound', async () => {
    await cleaning(async (cleanup) => {
      const killed = nodes[2]
      const k1 = await joinPeer(cleanup, url(2), 'v2')
      const k2 = await joinPeer(cleanup, url(2), 'v4')
      const p0 = await joinPeer(cleanup, url(0), 'v2')
      const p1 = await joinPeer(cleanup, url(1), 'v4')
      for (const p of [p0, p1]) {
        for (const k of [k1, k2]) assert.ok(p.listed.includes(k.address), 'before the kill, the join acks of the other nodes list the peers of node 2')
      }
      // a dialer on node 0 with its listener on node 2, and a dialer on node 2 with its listener on node 1, both mid-stream
      const toKilled = await relay(p0.client, p0.address, k1.client, k1.address)
      const fromKilled = await relay(k2.client, k2.address, p1.client, p1.address)
      for (const [r, dialer, listener] of [[toKilled, p0, k1], [fromKilled, k2, p1]] as const) {
        await within(r.dialerMaySend, 'the dialer may send')
        send(dialer.client, r.forward, makeChunks(5, 100), null)
        await within(r.listenerMaySend, 'the listener may send')
        send(listener.client, r.back, makeChunks(3, 100), null)
        await until(() => r.atListener.received === 500 && r.atDialer.received === 300, 'the first chunks cross both ways')
      }

      const killedAt = Date.now()
      const exit = await killed.stop('SIGKILL')
      assert.equal(exit.signal, 'SIGKILL')
      const bound = PURGE_BOUND_MS + PURGE_SLACK_MS
      const elapsed = async (what: string, promise: Promise<unknown>): Promise<number> => {
        await within(promise, what, bound + PATIENCE_MS)
        return Date.now() - killedAt
      }
      const [toKilledEnd, fromKilledEnd] = await Promise.all([
        within(toKilled.atDialer.done, 'the end of the stream from node 2 at its dialer on node 0', bound + PATIENCE_MS),
        within(fromKilled.atListener.done, 'the end of the stream from node 2 at its listener on node 1', bound + PATIENCE_MS)
      ])
      const streamsEndedMs = Date.now() - killedAt
      assert.equal(toKilledEnd.end, true, 'the dialer on node 0 hears its stream end')
      assert.equal(toKilledEnd.bytes, 300)
      assert.equal(fromKilledEnd.end, true, 'the listener on node 1 hears its stream end')
      assert.equal(fromKilledEnd.bytes, 500)
      const vanishedMs = await Promise.all([p0, p1].map(async (p) => await elapsed('the peers of node 2 vanish', eventually(async () => await listedTo(p),
        (listed) => !listed.includes(k1.address) && !listed.includes(k2.address), 'the peers of the killed node are gone from the join ack', { ...SLOW_POLL, patienceMs: bound + PATIENCE_MS }))))
      console.log(`# kill -9: streams ended after ${streamsEndedMs} ms, peers gone from the join acks after ${vanishedMs.join(' and ')} ms (bound ${PURGE_BOUND_MS} ms)`)
      assert.ok(streamsEndedMs <= bound, `the streams ended ${streamsEndedMs} ms after the kill, beyond ${PURGE_BOUND_MS} ms (+${PURGE_SLACK_MS} ms for a loaded machine)`)
      for (const ms of vanishedMs) assert.ok(ms <= bound, `the peers of the killed node vanished ${ms} ms after the kill, beyond ${PURGE_BOUND_MS} ms (+${PURGE_SLACK_MS} ms for a loaded machine)`)

      assert.deepEqual(await p0.client.request('ss-dial', p0.address, k1.address, randomUUID()), [ERRORS.PEER_NOT_FOUND])
      const survivors = [nodes[0], nodes[1]] as CliServer[]
      await Promise.all(survivors.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN) === 2, 'the node counts two nodes')))
      // the survivors still relay between each other
      const r = await relay(p0.client, p0.address, p1.client, p1.address)
      await exchange(p0, p1, r, [...makeChunks(3, KiB)], [...makeChunks(2, KiB)])
      await untilRelaysFreed(survivors)
    })
  })
})

describe('address takeover across nodes, with the crypto challenge', { skip: NO_REDIS }, () => {
  const processes = new Cleanup()
  let nodes: CliServer[] = []
  const url = (i: number): string => nodes[i].uri
  /** Long, so that a node stopped with SIGTERM cannot have been purged for its silence. */
  const timeoutMs = 10_000

  before(async () => {
    ({ nodes } = await startCluster(processes, 'takeover', [`--clusterNodeTimeoutMS=${timeoutMs}`, `--refreshPeerListIntervalMS=${REFRESH_MS}`]))
    await Promise.all(nodes.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_cluster_up', {}, NaN) === 1, 'the node is connected to Redis')))
  })
  after(async () => { await processes.run() })

  /** A client on `url` holding a fresh Ed25519 identity's address. */
  const keyed = async (cleanup: Cleanup, at: string, version: ClientVersion = 'v2'): Promise<Joined> => {
    const client = await open(cleanup, at, version)
    const identity = await libp2pIdentity('Ed25519')
    const address = addressOf(identity.id)
    const { answer, signature } = await joinWithChallenge(client, address, identity)
    assert.equal(answer[0], null, `join of ${address}`)
    return { client, address, data: signature }
  }

  /** What `client` is answered when it dials from `address` to an address nobody holds: 'Peer not found' while it holds `address`, else 'Not authorized for this address'. */
  const dialFrom = async (client: Client, address: string): Promise<unknown[]> => await client.request('ss-dial', address, randomAddress(), randomUUID())

  it('a join on another node takes an address only with its key, and dials then reach the new holder', async () => {
    await cleaning(async (cleanup) => {
      const identity = await libp2pIdentity('Ed25519')
      const x = addressOf(identity.id)
      const a = await open(cleanup, url(0), 'v2')
      const first = await joinWithChallenge(a, x, identity)
      assert.equal(first.answer[0], null)
      const c = await keyed(cleanup, url(2), 'v4')
      assert.ok((await listedTo(c)).includes(x), 'node 2 lists the address joined on node 0')

      // on node 1, without the key: no id, someone else's key, a signature by someone else
      const e = await open(cleanup, url(1), 'v4')
      assert.deepEqual(await e.request('ss-join', x, ''), [ERRORS.NO_ID])
      const other = await libp2pIdentity('Ed25519')
      assert.deepEqual(await e.request('ss-join', x, other.publicKeyHex), [ERRORS.ID_MISMATCH])
      const [err, nonce] = await e.request('ss-join', x, identity.publicKeyHex)
      assert.equal(err, null)
      assert.deepEqual(await e.request('ss-join', x, await other.sign(Buffer.from(nonce as string))), [ERRORS.SIGNATURE_INVALID])
      // node 0 keeps it: a dial from node 2 reaches its holder there
      assert.deepEqual(await dialFrom(a, x), [ERRORS.PEER_NOT_FOUND], 'the holder on node 0 may still dial from it')
      const kept = await relay(c.client, c.address, a, x)
      await exchange(c, { client: a, address: x, data: first.signature }, kept, [...makeChunks(2, 100)], [...makeChunks(2, 100)])

      // on node 1, with the key: taken from node 0
      let incomingAtA = 0
      a.socket.on('ss-incomming', () => { incomingAtA++ })
      const b = await open(cleanup, url(1), 'v2')
      const taken = await joinWithChallenge(b, x, identity)
      assert.equal(taken.answer[0], null, 'the join with the key on node 1 succeeds')
      await eventually(async () => await dialFrom(a, x), (answer) => answer[0] === ERRORS.NOT_AUTHORIZED, 'the connection on node 0 no longer holds the address', SLOW_POLL)
      const toB = await relay(c.client, c.address, b, x)
      await exchange(c, { client: b, address: x, data: taken.signature }, toB, [...makeChunks(2, 100)], [...makeChunks(2, 100)])
      assert.equal(incomingAtA, 0, 'the former holder on node 0 hears no dial')
      assert.equal((await listedTo(c)).filter((address) => address === x).length, 1, 'the address is listed once')

      // and back to node 0, with the signature it verified before on that connection
      assert.equal((await a.request('ss-join', x, first.signature))[0], null, 'the first holder takes it back with its signature')
      await eventually(async () => await dialFrom(b, x), (answer) => answer[0] === ERRORS.NOT_AUTHORIZED, 'the connection on node 1 no longer holds the address', SLOW_POLL)
      const toA = await relay(c.client, c.address, a, x)
      await exchange(c, { client: a, address: x, data: first.signature }, toA, [...makeChunks(2, 100)], [...makeChunks(2, 100)])
      await untilRelaysFreed(nodes)
    })
  })

  // last: node 1 does not come back
  it('SIGTERM on a node: it exits 0 and its peers are gone from the others\' join acks at once, but not an address taken from it', async () => {
    await cleaning(async (cleanup) => {
      const stopped = nodes[1]
      const survivors = [nodes[0], nodes[2]] as CliServer[]
      await Promise.all(survivors.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN) === 3, 'the node sees three nodes', timeoutMs + PATIENCE_MS)))
      const c = await keyed(cleanup, url(2), 'v2')
      const y = await keyed(cleanup, url(1), 'v4')
      // an address first held on node 1, then taken by node 0
      const identity = await libp2pIdentity('Ed25519')
      const x = addressOf(identity.id)
      const b = await open(cleanup, url(1), 'v2')
      assert.equal((await joinWithChallenge(b, x, identity)).answer[0], null)
      const a = await open(cleanup, url(0), 'v4')
      const taken = await joinWithChallenge(a, x, identity)
      assert.equal(taken.answer[0], null)
      await eventually(async () => await dialFrom(b, x), (answer) => answer[0] === ERRORS.NOT_AUTHORIZED, 'node 1 has let the address go', SLOW_POLL)
      const listedBefore = await listedTo(c)
      assert.ok(listedBefore.includes(y.address) && listedBefore.includes(x), 'node 2 lists the addresses of nodes 0 and 1')

      const disconnected = y.client.next('disconnect')
      const exit = await stopped.stop('SIGTERM')
      assert.equal(exit.code, 0, `exit code 0; stderr:\n${exit.stderr}`)
      await disconnected
      // the very first join after the exit: node 1 removed its addresses itself, long before its timeout
      const listedAfter = await listedTo(c)
      assert.ok(!listedAfter.includes(y.address), 'the address held on the stopped node is gone at once')
      assert.ok(listedAfter.includes(x), 'the address taken from the stopped node by node 0 stays')
      const r = await relay(c.client, c.address, a, x)
      await exchange(c, { client: a, address: x, data: taken.signature }, r, [...makeChunks(2, 100)], [...makeChunks(2, 100)])
      await Promise.all(survivors.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_cluster_nodes', {}, NaN) === 2, 'the node counts two nodes', timeoutMs / 2)))
    })
  })
})

describe('Redis stopped and restarted under three nodes', { skip: NO_REDIS }, () => {
  const processes = new Cleanup()
  let cluster: Cluster
  const url = (i: number): string => cluster.nodes[i].uri

  before(async () => {
    cluster = await startCluster(processes, 'outage', [
      '--disableCryptoChallenge',
      `--clusterNodeTimeoutMS=${NODE_TIMEOUT_MS}`,
      `--refreshPeerListIntervalMS=${REFRESH_MS}`,
      `--dialTimeoutMS=${DIAL_TIMEOUT_MS}`
    ])
    await untilFormed(cluster.nodes)
  })
  after(async () => { await processes.run() })

  it('each node serves its own peers while Redis is away, reports itself degraded, and the cluster heals once Redis is back empty', async () => {
    await cleaning(async (cleanup) => {
      const { redis, nodes } = cluster
      const p0 = await joinPeer(cleanup, url(0), 'v2')
      const q0 = await joinPeer(cleanup, url(0), 'v4')
      const p1 = await joinPeer(cleanup, url(1), 'v4')
      const p2 = await joinPeer(cleanup, url(2), 'v2')
      for (const earlier of [p0, q0, p1]) assert.ok(p2.listed.includes(earlier.address), 'before the outage, node 2 lists the peers of nodes 0 and 1')

      await redis.stop()
      await Promise.all(nodes.map(async (node) => await untilScraped(node, (m) => sampleOr(m, 'rendezvous_cluster_up', {}, NaN) === 0, 'rendezvous_cluster_up is 0')))
      for (const node of nodes) {
        const { status, body } = await health(node.uri)
        assert.equal(status, 200, 'a degraded node still takes peers')
        assert.equal(body.status, 'degraded')
        assert.equal(body.cluster?.redis, 'down')
      }

      // local joins, discovery and dials go on
      const r0 = await joinPeer(cleanup, url(0), 'v2')
      assert.ok(r0.listed.includes(p0.address) && r0.listed.includes(q0.address), 'a join on node 0 lists the peers of node 0')
      await p0.client.discovers(r0.address)
      await r0.client.discovers(q0.address)
      const since = p0.client.peerEvents.length
      await until(() => heard(p0, q0.address, since) >= 2, 'node 0 keeps announcing its peers to each other')
      const local = await relay(p0.client, p0.address, r0.client, r0.address)
      await exchange(p0, r0, local, [...makeChunks(4, KiB)], [...makeChunks(4, KiB)])
      // a peer that joins node 1 meanwhile
      const s1 = await joinPeer(cleanup, url(1), 'v4')
      assert.ok(s1.listed.includes(p1.address), 'a join on node 1 lists the peers of node 1')

      await redis.restart()
      await untilFormed(nodes)
      for (const node of nodes) await assertClustered(node, 3)
      // the peers of every node are registered again, those that joined during the outage too
      const everyone = [p0, q0, r0, p1, s1]
      await eventually(async () => await listedTo(p2), (listed) => everyone.every((p) => listed.includes(p.address)),
        'a join ack on node 2 lists the peers of nodes 0 and 1 again, those that joined during the outage too', SLOW_POLL)
      // announcements cross nodes again, every way
      await p2.client.discovers(r0.address)
      await p2.client.discovers(s1.address)
      const healedAt = [p0, p1].map((p) => p.client.peerEvents.length)
      await until(() => heard(p0, p2.address, healedAt[0]) >= 1 && heard(p1, p2.address, healedAt[1]) >= 1 && heard(p0, s1.address) >= 1 && heard(s1, r0.address) >= 1,
        'the peers of nodes 0 and 1 hear of the other nodes\' peers again')
      // and so do dials
      const across = await relay(p2.client, p2.address, r0.client, r0.address)
      await exchange(p2, r0, across, [...makeChunks(4, KiB)], [...makeChunks(4, KiB)])
      const back = await relay(s1.client, s1.address, p2.client, p2.address)
      await exchange(s1, p2, back, [...makeChunks(4, KiB)], [...makeChunks(4, KiB)])
      await untilRelaysFreed(nodes)
    })
  })
})
