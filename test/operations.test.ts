/**
 * What an operator sees: every metric through a real exposition-format
 * parser, /health through a graceful shutdown, and the logs.
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ERRORS } from '../src/index.js'
import { connect, type Client } from './helpers/clients.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity, randomAddress } from './helpers/keys.js'
import { observations, sample, scrape } from './helpers/metrics.js'
import { startCli, startServer } from './helpers/server.js'
import { makeChunks, relay, send, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url)

describe('metrics', () => {
  let server: Server
  const clients: Client[] = []
  before(async () => { server = await startServer({ metrics: true }) })
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await server.stop()
  })

  it('exports every documented family with its type', async () => {
    const { families } = await scrape(server.url)
    const expected: Record<string, string> = {
      rendezvous_peers: 'GAUGE',
      rendezvous_joins_total: 'COUNTER',
      rendezvous_joins_total_success: 'COUNTER',
      rendezvous_joins_total_failure: 'COUNTER',
      rendezvous_dials_total: 'COUNTER',
      rendezvous_dials_total_success: 'COUNTER',
      rendezvous_dials_total_failure: 'COUNTER',
      rendezvous_connections: 'GAUGE',
      rendezvous_joined_connections: 'GAUGE',
      rendezvous_crypto_challenges_pending: 'GAUGE',
      rendezvous_relayed_streams: 'GAUGE',
      rendezvous_relay_paused_senders: 'GAUGE',
      rendezvous_relayed_bytes_total: 'COUNTER',
      rendezvous_discovery_announcements_total: 'COUNTER',
      rendezvous_join_duration_seconds: 'HISTOGRAM',
      rendezvous_dial_duration_seconds: 'HISTOGRAM',
      rendezvous_handler_errors_total: 'COUNTER',
      nodejs_eventloop_lag_seconds: 'GAUGE',
      process_cpu_user_seconds_total: 'COUNTER',
      process_resident_memory_bytes: 'GAUGE'
    }
    for (const [name, type] of Object.entries(expected)) {
      assert.equal(families.get(name)?.type, type, `${name} is a ${type}`)
    }
  })

  it('counts joins, dials, relayed bytes and disconnects as they happen', async () => {
    const a = await connect(server.url, 'v2')
    const b = await connect(server.url, 'v4')
    clients.push(a, b)
    const idA = await libp2pIdentity('Ed25519')
    const idB = await libp2pIdentity('Ed25519')
    const [addressA, addressB] = [addressOf(idA.id), addressOf(idB.id)]
    assert.equal((await joinWithChallenge(a, addressA, idA)).answer[0], null)
    // a refused join, and a challenge left pending
    assert.deepEqual(await b.request('ss-join', addressB, ''), [ERRORS.NO_ID])
    const stranger = await libp2pIdentity('Ed25519')
    await b.request('ss-join', addressOf(stranger.id), stranger.publicKeyHex)
    assert.equal((await joinWithChallenge(b, addressB, idB)).answer[0], null)
    await a.discovers(addressB)

    let m = await scrape(server.url)
    assert.equal(sample(m, 'rendezvous_peers'), 2)
    assert.equal(sample(m, 'rendezvous_connections'), 2)
    assert.equal(sample(m, 'rendezvous_joined_connections'), 2)
    assert.equal(sample(m, 'rendezvous_crypto_challenges_pending'), 1)
    assert.equal(sample(m, 'rendezvous_joins_total'), 4)
    assert.equal(sample(m, 'rendezvous_joins_total_success'), 2)
    assert.equal(sample(m, 'rendezvous_joins_total_failure'), 1)
    assert.equal(observations(m, 'rendezvous_join_duration_seconds', { result: 'challenge' }), 3)
    assert.equal(observations(m, 'rendezvous_join_duration_seconds', { result: 'success' }), 2)
    assert.equal(observations(m, 'rendezvous_join_duration_seconds', { result: 'failure' }), 1)
    assert.ok(sample(m, 'rendezvous_discovery_announcements_total') >= 1)

    const r = await relay(a, addressA, b, addressB)
    m = await scrape(server.url)
    assert.equal(sample(m, 'rendezvous_relayed_streams'), 2)
    assert.equal(sample(m, 'rendezvous_dials_total'), 1)
    assert.equal(sample(m, 'rendezvous_dials_total_success'), 1)
    assert.equal(observations(m, 'rendezvous_dial_duration_seconds', { result: 'success' }), 1)
    assert.deepEqual(await a.request('ss-dial', addressA, randomAddress(), 'nobody'), [ERRORS.PEER_NOT_FOUND])

    const there = [...makeChunks(40, 2500)]
    const back = [...makeChunks(10, 1000)]
    await r.dialerMaySend
    send(a, r.forward, there)
    await r.listenerMaySend
    send(b, r.back, back)
    assert.equal((await within(r.atListener.done, 'forward')).sha256, sha256(there))
    assert.equal((await within(r.atDialer.done, 'back')).sha256, sha256(back))
    await until(() => server.stats().relayedStreams === 0, 'the relay is over')

    m = await scrape(server.url)
    assert.equal(sample(m, 'rendezvous_relayed_streams'), 0)
    assert.equal(sample(m, 'rendezvous_relayed_bytes_total'), 110_000)
    assert.equal(sample(m, 'rendezvous_dials_total'), 2)
    assert.equal(sample(m, 'rendezvous_dials_total_failure'), 1)
    assert.equal(observations(m, 'rendezvous_dial_duration_seconds', { result: 'failure' }), 1)
    assert.equal(sample(m, 'rendezvous_relay_paused_senders'), 0)
    // kept as an artefact: what an operator's Prometheus scrapes after a join, a dial and a relay
    mkdirSync(ARTIFACTS, { recursive: true })
    writeFileSync(new URL('metrics.txt', ARTIFACTS), m.text)
    process.stdout.write(`# metrics scrape: ${fileURLToPath(new URL('metrics.txt', ARTIFACTS))}\n`)

    await b.close()
    await until(() => server.stats().connections === 1, 'b is gone')
    m = await scrape(server.url)
    assert.equal(sample(m, 'rendezvous_peers'), 1)
    assert.equal(sample(m, 'rendezvous_connections'), 1)
    assert.equal(sample(m, 'rendezvous_crypto_challenges_pending'), 0)
    // no handler has thrown: the counter exists, with no sample yet
    assert.equal(m.families.get('rendezvous_handler_errors_total')?.metrics.length, 0)
  })
})

describe('graceful shutdown', () => {
  it('answers 503 on /health, refuses new connections and dials, and lets open relays finish', async () => {
    const server = await startServer({ cryptoChallenge: false })
    const a = await connect(server.url, 'v2')
    const b = await connect(server.url, 'v4')
    const [addressA, addressB] = [randomAddress(), randomAddress()]
    await a.request('ss-join', addressA, '')
    await b.request('ss-join', addressB, '')
    const health = await fetch(`${server.url}/health`)
    assert.equal(health.status, 200)
    assert.equal((await health.json() as { status: string }).status, 'ok')
    const r = await relay(a, addressA, b, addressB)

    // a grace period far longer than the test's patience: finishing early proves it waits for the relay only
    const stopped = server.shutdown(120_000)
    const draining = await fetch(`${server.url}/health`)
    assert.equal(draining.status, 503)
    assert.equal((await draining.json() as { status: string }).status, 'stopping')
    await assert.rejects(connect(server.url, 'v4'))
    assert.deepEqual(await a.request('ss-dial', addressA, addressB, 'late'), [ERRORS.SHUTTING_DOWN])

    const there = [...makeChunks(20, 1000)]
    await r.dialerMaySend
    send(a, r.forward, there)
    assert.equal((await within(r.atListener.done, 'the relay in flight')).sha256, sha256(there))
    send(b, r.back, [])
    await within(r.atDialer.done, 'the back stream')
    await within(stopped, 'shutdown once the last relay ended')
    await until(() => !a.socket.connected && !b.socket.connected, 'clients disconnected')
  })

  it('ends the relays still open when the grace period is over', async () => {
    const server = await startServer({ cryptoChallenge: false })
    const a = await connect(server.url, 'v2')
    const b = await connect(server.url, 'v2')
    const [addressA, addressB] = [randomAddress(), randomAddress()]
    await a.request('ss-join', addressA, '')
    await b.request('ss-join', addressB, '')
    const r = await relay(a, addressA, b, addressB)
    await server.shutdown(200)
    assert.equal((await within(r.atListener.done, 'end at the listener')).end, true)
    assert.equal((await within(r.atDialer.done, 'end at the dialer')).end, true)
    await until(() => !a.socket.connected && !b.socket.connected, 'clients disconnected')
  })

  it('the CLI drains on SIGTERM and exits 0 once the relay ends; a second signal exits at once', async () => {
    const cli = await startCli(['--disableCryptoChallenge', '--shutdownGracePeriodMS=120000'])
    const url = `http://127.0.0.1:${cli.port}`
    const a = await connect(url, 'v2')
    const b = await connect(url, 'v2')
    const [addressA, addressB] = [randomAddress(), randomAddress()]
    await a.request('ss-join', addressA, '')
    await b.request('ss-join', addressB, '')
    const r = await relay(a, addressA, b, addressB)
    cli.proc.kill('SIGTERM')
    await until(() => cli.output().stdout.includes('Received SIGTERM'), 'the CLI has the signal')
    assert.match(cli.output().stdout, /2 relayed streams may finish/)
    assert.equal((await fetch(`${url}/health`)).status, 503)
    await r.dialerMaySend
    send(a, r.forward, [Buffer.from('last words')])
    assert.equal((await within(r.atListener.done, 'the relay in flight')).bytes, 10)
    send(b, r.back, [])
    const exit = await within(cli.exited, 'exit after the relay ended')
    assert.equal(exit.code, 0)
    assert.match(exit.stdout, /Rendezvous server stopped/)

    const again = await startCli(['--disableCryptoChallenge', '--shutdownGracePeriodMS=120000'])
    const url2 = `http://127.0.0.1:${again.port}`
    const c = await connect(url2, 'v2')
    const d = await connect(url2, 'v2')
    const [addressC, addressD] = [randomAddress(), randomAddress()]
    await c.request('ss-join', addressC, '')
    await d.request('ss-join', addressD, '')
    await relay(c, addressC, d, addressD)
    again.proc.kill('SIGTERM')
    await until(() => again.output().stdout.includes('Received SIGTERM'), 'the first signal')
    again.proc.kill('SIGTERM')
    const forced = await within(again.exited, 'exit on the second signal')
    assert.equal(forced.code, 1)
    assert.match(forced.stderr, /SIGTERM again, exiting now/)
  })
})

describe('logs', () => {
  it('DEBUG=rendezvous:* shows joins, leaves and dials with the connection id', async () => {
    const cli = await startCli(['--disableCryptoChallenge'], { DEBUG: 'rendezvous:*' })
    const url = `http://127.0.0.1:${cli.port}`
    const a = await connect(url, 'v4')
    const address = randomAddress()
    await a.request('ss-join', address, '')
    await a.request('ss-dial', address, randomAddress(), 'x1')
    a.emit('ss-leave', address)
    const id = a.socket.id as string
    await until(() => cli.output().stderr.includes(`[${id}] left ${address}`), 'the leave is logged')
    const { stderr } = cli.output()
    assert.match(stderr, new RegExp(`\\[${id}\\] joined ${address}`))
    assert.match(stderr, new RegExp(`\\[${id}\\] dial x1 from ${address} to \\S+ refused: Peer not found`))
    await a.close()
    assert.equal((await cli.stop()).code, 0)
  })

  it('without DEBUG, prints only the start line and the shutdown', async () => {
    const cli = await startCli()
    const url = `http://127.0.0.1:${cli.port}`
    const a = await connect(url, 'v2')
    const identity = await libp2pIdentity('Ed25519')
    assert.equal((await joinWithChallenge(a, addressOf(identity.id), identity)).answer[0], null)
    assert.deepEqual(await a.request('ss-join', 42, ''), [ERRORS.INVALID_REQUEST])
    await a.close()
    const exit = await cli.stop('SIGINT')
    assert.equal(exit.code, 0)
    assert.equal(exit.stderr, '')
    assert.deepEqual(exit.stdout.trim().split('\n'), [`Listening on: ${cli.uri}`, 'Received SIGINT, stopping', 'Rendezvous server stopped'])
  })
})
