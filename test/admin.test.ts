/**
 * The operator's view (`--adminToken`): `GET /admin/peers` and
 * `POST /admin/peers/<id>/disconnect` over real HTTP, with real clients
 * joined and relaying through the server; the token's checks, the pages, a
 * removal as an old client sees it, the CLI's handling of the token, and the
 * view of a two-node cluster on a real redis-server.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerView } from '../src/admin.js'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client } from './helpers/clients.js'
import { request, type Response } from './helpers/http.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { sampleOr, scrape } from './helpers/metrics.js'
import { NO_REDIS, startRedis } from './helpers/redis.js'
import { assertConfigError, runCli, startCli, startServer } from './helpers/server.js'
import { makeChunks, relay, send } from './helpers/streams.js'
import { eventually, within } from './helpers/wait.js'

const TOKEN = 'test-admin-token-0123456789'
const BEARER = { authorization: `Bearer ${TOKEN}` }

interface Page {
  peers: PeerView[]
  next: string | null
  incomplete?: string
}

type Server = Awaited<ReturnType<typeof startServer>>

const cleanup = new Cleanup()
after(async () => { await cleanup.run() })

async function server (options: Parameters<typeof startServer>[0]): Promise<Server> {
  const started = await startServer({ cryptoChallenge: false, metrics: true, ...options })
  cleanup.add(async () => { await started.stop() })
  return started
}

async function client (url: string, version: 'v2' | 'v4' = 'v2', transport: 'websocket' | 'polling' = 'websocket'): Promise<Client> {
  const c = await connect(url, version, transport)
  cleanup.add(async () => { await c.close() })
  return c
}

async function joined (url: string, version: 'v2' | 'v4' = 'v2', transport: 'websocket' | 'polling' = 'websocket'): Promise<{ client: Client, address: string }> {
  const c = await client(url, version, transport)
  const address = randomAddress()
  await joinWithoutChallenge(c, address)
  return { client: c, address }
}

async function page (url: string, query = ''): Promise<Page> {
  const res = await request(`${url}/admin/peers${query}`, { headers: BEARER })
  assert.equal(res.status, 200, res.body)
  assert.equal(res.headers['access-control-allow-origin'], undefined, 'no CORS on the operator\'s view')
  return JSON.parse(res.body) as Page
}

async function remove (url: string, id: string, headers: Record<string, string> = BEARER): Promise<Response> {
  return await request(`${url}/admin/peers/${encodeURIComponent(id)}/disconnect`, { method: 'POST', headers })
}

describe('the admin view without --adminToken', () => {
  it('is not there: every /admin/ path answers 404, with or without a token', async () => {
    const { url } = await server({})
    await joined(url)
    for (const res of [
      await request(`${url}/admin/peers`),
      await request(`${url}/admin/peers`, { headers: BEARER }),
      await remove(url, randomAddress())
    ]) assert.equal(res.status, 404, res.body)
  })
})

describe('the admin view', () => {
  let s: Server
  let dialer: { client: Client, address: string }
  let listener: { client: Client, address: string }

  before(async () => {
    s = await server({ adminToken: TOKEN })
    dialer = await joined(s.url, 'v2', 'websocket')
    listener = await joined(s.url, 'v4', 'polling')
  })

  it('answers 401 to a request without the token, with a wrong one or another scheme, counting each', async () => {
    const before = sampleOr(await scrape(s.url), 'rendezvous_refusals_total', { reason: 'admin auth' })
    const refused = [
      await request(`${s.url}/admin/peers`),
      await request(`${s.url}/admin/peers`, { headers: { authorization: `Bearer ${TOKEN}x` } }),
      await request(`${s.url}/admin/peers`, { headers: { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` } }),
      await remove(s.url, dialer.address, { authorization: 'Bearer ' })
    ]
    for (const res of refused) {
      assert.equal(res.status, 401, res.body)
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="rendezvous"')
      assert.equal(res.headers['access-control-allow-origin'], undefined, 'no CORS on the operator\'s view')
      assert.doesNotMatch(res.body, /peers|removed/)
    }
    assert.equal(sampleOr(await scrape(s.url), 'rendezvous_refusals_total', { reason: 'admin auth' }) - before, refused.length)
    assert.deepEqual(await eventually(async () => await page(s.url), (p) => p.peers.length === 2, 'both peers listed').then((p) => p.peers.map((v) => v.address)), [dialer.address, listener.address].sort())
  })

  it('lists each joined address with its connection\'s age, transport, client address and relayed bytes', async () => {
    const streams = await relay(dialer.client, dialer.address, listener.client, listener.address)
    await streams.dialerMaySend
    send(dialer.client, streams.forward, makeChunks(10, 1000))
    assert.equal((await within(streams.atListener.done, 'the relayed stream ends')).bytes, 10_000)
    const { peers, next } = await page(s.url)
    assert.equal(next, null)
    const byAddress = new Map(peers.map((p) => [p.address, p]))
    const atDialer = byAddress.get(dialer.address)
    const atListener = byAddress.get(listener.address)
    assert.ok(atDialer !== undefined && atListener !== undefined, JSON.stringify(peers))
    assert.equal(atDialer.transport, 'websocket')
    assert.equal(atListener.transport, 'polling')
    for (const [view, c, address] of [[atDialer, dialer.client, dialer.address], [atListener, listener.client, listener.address]] as const) {
      assert.equal(view.connection, c.socket.id)
      assert.equal(view.peerId, address.split('/').pop())
      assert.match(view.clientAddress, /^(::ffff:)?127\.0\.0\.1$/)
      assert.equal(view.node, null)
      assert.ok(view.connectedForMS >= 0 && view.connectedForMS < 10 * 60_000, String(view.connectedForMS))
      // the dialer's 10 chunks, at both ends; kept once the dial is over
      assert.equal(view.relayedBytes, 10_000)
    }
  })

  it('pages through the addresses in order: limit and next, then after', async () => {
    const more = await client(s.url)
    for (let i = 0; i < 3; i++) await joinWithoutChallenge(more, randomAddress())
    const all = Object.keys(s.peers()).sort()
    assert.equal(all.length, 5)
    const seen: string[] = []
    let query = '?limit=2'
    for (let pages = 0; pages < 5; pages++) {
      const p = await page(s.url, query)
      assert.ok(p.peers.length <= 2)
      seen.push(...p.peers.map((v) => v.address))
      if (p.next === null) break
      query = `?limit=2&after=${encodeURIComponent(p.next)}`
    }
    assert.deepEqual(seen, all)
    for (const bad of ['?limit=0', '?limit=many', '?limit=-1']) {
      const res = await request(`${s.url}/admin/peers${bad}`, { headers: BEARER })
      assert.equal(res.status, 400, bad)
      assert.match(res.body, /limit must be a whole number from 1/)
    }
    // beyond the most a page lists: the most, not an error
    assert.equal((await page(s.url, '?limit=100000')).peers.length, 5)
  })

  it('answers 405 to another method and 404 to another path', async () => {
    assert.equal((await request(`${s.url}/admin/peers`, { method: 'POST', headers: BEARER })).status, 405)
    assert.equal((await request(`${s.url}/admin/peers/x/disconnect`, { headers: BEARER })).status, 405)
    assert.equal((await request(`${s.url}/admin/nothing`, { headers: BEARER })).status, 404)
  })

  it('removes a peer named by its id in either form: its address released, its old client disconnected for good', async () => {
    const id = dialer.address.split('/').pop() ?? ''
    const disconnected = dialer.client.next('disconnect')
    const res = await remove(s.url, peerIdFromString(id).toCID().toString())
    assert.equal(res.status, 200, res.body)
    assert.deepEqual(JSON.parse(res.body), { removed: [{ address: dialer.address, node: null }] })
    // a Socket.IO disconnect: socket.io-client 2.x does not come back by itself
    assert.deepEqual(await disconnected, ['io server disconnect'])
    assert.equal(dialer.client.socket.connected, false)
    assert.equal(s.peers()[dialer.address], undefined)
    assert.deepEqual((await page(s.url)).peers.map((p) => p.address).includes(dialer.address), false)
    // the listener, its peer in the dial, stays
    assert.equal(listener.client.socket.connected, true)
    assert.equal((await remove(s.url, id)).status, 404)
    for (const bad of ['not-a-peer', '/ip4/1.2.3.4/tcp/1']) {
      const answer = await remove(s.url, bad)
      assert.equal(answer.status, 400, bad)
      assert.match(answer.body, /not a peer id or a peer's address/)
    }
  })
})

describe('--adminToken on the command line', () => {
  it('a token too short, in the flag or the variable, exits 2 naming the option without quoting the token', async () => {
    const flag = await runCli(['--adminToken=tooshort'])
    assertConfigError(flag, /^rendezvous: --adminToken: must be at least 16 visible ASCII characters, without spaces$/)
    const env = await runCli([], { ADMIN_TOKEN: 'has a space in it ok' })
    assertConfigError(env, /^rendezvous: ADMIN_TOKEN: must be at least 16 visible ASCII characters, without spaces$/)
    assert.doesNotMatch(flag.stderr + env.stderr, /tooshort|has a space/)
  })

  it('serves the view, and logs with every namespace on never show the token, right or wrong', async () => {
    const wrong = 'not-the-token-at-all-0000'
    const cli = await startCli(['--disableCryptoChallenge'], { ADMIN_TOKEN: TOKEN, DEBUG: 'rendezvous:*' })
    cleanup.add(async () => { await cli.stop('SIGKILL') })
    const c = await client(cli.uri)
    const address = randomAddress(cli.port)
    await joinWithoutChallenge(c, address)
    assert.equal((await request(`${cli.uri}/admin/peers`, { headers: { authorization: `Bearer ${wrong}` } })).status, 401)
    assert.deepEqual((await page(cli.uri)).peers.map((p) => p.address), [address])
    assert.equal((await remove(cli.uri, address)).status, 200)
    await cli.stop()
    const { stdout, stderr } = cli.output()
    assert.match(stderr, /refused: no valid token/)
    assert.match(stderr, /disconnected by the operator/)
    assert.equal((stdout + stderr).includes(TOKEN), false)
    assert.equal((stdout + stderr).includes(wrong), false)
  })
})

describe('the admin view of a cluster', { skip: NO_REDIS }, () => {
  it('lists the peers of every node with their node, and removes a peer from the node that serves it', async () => {
    const redis = await startRedis()
    cleanup.add(async () => { await redis.stop() })
    const [one, two] = [await server({ adminToken: TOKEN, redis: redis.url }), await server({ adminToken: TOKEN, redis: redis.url })]
    const here = await joined(one.url)
    const there = await joined(two.url, 'v4')
    const nodeOf = (x: Server): string => x.stats().cluster?.node ?? ''
    const listed = await eventually(async () => await page(one.url), (p) => p.peers.length === 2 && p.incomplete === undefined, 'both nodes\' peers listed by the first')
    assert.deepEqual(listed.peers.map((p) => [p.address, p.node]), [[here.address, nodeOf(one)], [there.address, nodeOf(two)]].sort((a, b) => (a[0] ?? '') < (b[0] ?? '') ? -1 : 1))
    assert.equal(listed.peers.find((p) => p.address === there.address)?.connection, there.client.socket.id)
    const disconnected = there.client.next('disconnect')
    const res = await remove(one.url, there.address)
    assert.equal(res.status, 200, res.body)
    assert.deepEqual(JSON.parse(res.body), { removed: [{ address: there.address, node: nodeOf(two) }] })
    await disconnected
    assert.deepEqual(Object.keys(two.peers()), [])
    assert.deepEqual((await page(two.url)).peers.map((p) => p.address), [here.address])
  })
})
