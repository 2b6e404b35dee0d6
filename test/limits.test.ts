/**
 * Every limit of the README's "Security and limits" table, hit on purpose
 * with real socket.io-client 2.x and 4.x clients against servers where it is
 * set small: its error string or close reason, and that honest use is left
 * alone. Covered elsewhere: pending crypto challenges per connection and their
 * lifetime (maxPendingChallenges, challengeTimeoutMS) in join.test.ts;
 * relayed streams per connection, bytes and time per relay, the dial timeout
 * and relay backpressure in relay.test.ts; output a peer leaves unread
 * (maxUnsentBytes) and the heartbeat (pingIntervalMS, pingTimeoutMS) in
 * slow-peers.test.ts.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { inspect } from 'node:util'
import pull from 'pull-stream'
import { ERRORS } from '../src/index.js'
import { connect, type Client, type ClientVersion, type Transport } from './helpers/clients.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { listen, type OldPeer } from './helpers/libp2p.js'
import { sampleOr, scrape } from './helpers/metrics.js'
import { assertConfigError, runCli, startCli, startServer } from './helpers/server.js'
import { STREAM, makeChunks, relay, send, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>
const KiB = 1024
const MiB = 1024 * KiB

/** Everything a test opened, closed whatever happened, servers last. */
class Opened {
  private readonly clients: Client[] = []
  private readonly servers: Server[] = []

  async server (options: Parameters<typeof startServer>[0]): Promise<Server> {
    const server = await startServer(options)
    this.servers.push(server)
    return server
  }

  async client (url: string, version: ClientVersion = 'v2', transport: Transport = 'websocket'): Promise<Client> {
    const client = await connect(url, version, transport)
    this.clients.push(client)
    return client
  }

  async close (): Promise<void> {
    await Promise.all(this.clients.splice(0).map(async (c) => { try { await c.close() } catch {} }))
    await Promise.all(this.servers.splice(0).map(async (s) => {
      // a polling client's close still in flight when the server stops leaves Engine.IO a 30 s timer
      try { await until(() => s.stats().connections === 0, 'the clients\' connections to close', 5000) } catch {}
      try { await s.stop() } catch {}
    }))
  }
}

async function join (client: Client, address: string): Promise<unknown[]> {
  return await client.request('ss-join', address, '')
}

/** Resolves with the reason of `client`'s next disconnect, and when it happened. */
async function disconnection (client: Client): Promise<{ reason: string, at: number }> {
  return await new Promise((resolve) => { client.socket.on('disconnect', (reason: string) => { resolve({ reason, at: Date.now() }) }) })
}

describe('addresses per connection (maxAddressesPerConnection)', () => {
  it('answers "Too many addresses on this connection" past the limit; a held address re-joins, a released one makes room', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, maxAddressesPerConnection: 3 })
      const a = await opened.client(server.url, 'v2')
      const held = [randomAddress(), randomAddress(), randomAddress()]
      for (const address of held) await joinWithoutChallenge(a, address)
      const fourth = randomAddress()
      assert.deepEqual(await join(a, fourth), [ERRORS.TOO_MANY_ADDRESSES])
      assert.equal(server.peers()[fourth], undefined)
      // re-joining what it holds takes no more room
      assert.equal((await join(a, held[1]))[0], null)
      // the limit is per connection
      const b = await opened.client(server.url, 'v4')
      await joinWithoutChallenge(b, randomAddress())
      a.emit('ss-leave', held[0])
      await until(() => !Object.hasOwn(server.peers(), held[0]), 'the address is left')
      await joinWithoutChallenge(a, fourth)
      assert.equal(Object.values(server.peers()).filter((id) => id === a.socket.id).length, 3)
    } finally {
      await opened.close()
    }
  })
})

describe('joined addresses in all (maxPeers)', () => {
  it('answers "Server full" to a new address once full; a held address can still be re-joined; a release makes room', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, maxPeers: 2 })
      const a = await opened.client(server.url, 'v2')
      const b = await opened.client(server.url, 'v4')
      const c = await opened.client(server.url, 'v2', 'polling')
      const addressA = randomAddress()
      const addressB = randomAddress()
      await joinWithoutChallenge(a, addressA)
      await joinWithoutChallenge(b, addressB)
      const addressC = randomAddress()
      assert.deepEqual(await join(c, addressC), [ERRORS.SERVER_FULL])
      assert.deepEqual(await join(a, randomAddress()), [ERRORS.SERVER_FULL], 'a holder cannot add a new address either')
      assert.deepEqual(await join(a, addressA), [null, null, [addressB]], 'its holder re-joins an address it holds')
      assert.equal(server.stats().peers, 2)
      await b.close()
      await until(() => server.stats().peers === 1, 'the address of the closed connection is released')
      assert.deepEqual(await join(c, addressC), [null, null, [addressA]])
    } finally {
      await opened.close()
    }
  })
})

describe('connections per remote address (maxConnectionsPerIP)', () => {
  it('refuses a third connection from 127.0.0.1 with the limit at 2, and accepts one again once a connection closes', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, maxConnectionsPerIP: 2 })
      const first = await opened.client(server.url, 'v2', 'websocket')
      await opened.client(server.url, 'v4', 'polling')
      for (const [version, transport] of [['v2', 'websocket'], ['v2', 'polling'], ['v4', 'websocket'], ['v4', 'polling']] as const) {
        await assert.rejects(connect(server.url, version, transport), `a third ${version} ${transport} connection is refused`)
      }
      // the refusal is the handshake's answer
      const handshake = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`)
      assert.equal(handshake.status, 403)
      assert.deepEqual(await handshake.json(), { code: 4, message: ERRORS.TOO_MANY_CONNECTIONS })
      assert.equal(server.stats().connections, 2)
      await first.close()
      await until(() => server.stats().connections === 1, 'the closed connection is counted out')
      const again = await opened.client(server.url, 'v4', 'websocket')
      await joinWithoutChallenge(again, randomAddress())
    } finally {
      await opened.close()
    }
  })
})

describe('request rates (maxJoinsPerSecond, maxDialsPerSecond)', () => {
  const RATE = 5

  /** Sends `count` requests at once; resolves with each answer's first argument, in order. */
  async function burst (client: Client, count: number, ...request: [string, ...unknown[]]): Promise<unknown[]> {
    const answers = await Promise.all(Array.from({ length: count }, async () => await client.request(...request)))
    return answers.map((answer) => answer[0])
  }

  /** The first twice-the-rate requests passed, then they were refused (one token may refill meanwhile). */
  function assertBurst (answers: unknown[], passed: unknown): void {
    const context = JSON.stringify(answers)
    assert.ok(answers.every((answer) => answer === passed || answer === ERRORS.RATE_LIMITED), context)
    assert.ok(answers.slice(0, 2 * RATE).every((answer) => answer === passed), `the first ${2 * RATE} pass: ${context}`)
    assert.ok(answers.filter((answer) => answer === passed).length <= 2 * RATE + 1, context)
    assert.equal(answers[answers.length - 1], ERRORS.RATE_LIMITED, context)
  }

  /** Repeats a request every 10 ms while it is refused for its rate; resolves with the first other answer. */
  async function untilAllowed (client: Client, ...request: [string, ...unknown[]]): Promise<unknown> {
    return await within((async () => {
      for (;;) {
        const [answer] = await client.request(...request)
        if (answer !== ERRORS.RATE_LIMITED) return answer
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })(), 'the bucket to refill')
  }

  it('answers "Too many requests, slow down" to joins once a burst passes twice the rate, per connection', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, maxJoinsPerSecond: RATE })
      const a = await opened.client(server.url, 'v2')
      const address = randomAddress()
      assertBurst(await burst(a, 20, 'ss-join', address, ''), null)
      // another connection has its own bucket
      await joinWithoutChallenge(await opened.client(server.url, 'v4'), randomAddress())
      // and this one refills at the rate
      assert.equal(await untilAllowed(a, 'ss-join', address, ''), null)
    } finally {
      await opened.close()
    }
  })

  it('answers "Too many requests, slow down" to dials once a burst passes twice the rate, per connection', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, maxDialsPerSecond: RATE })
      const a = await opened.client(server.url, 'v4')
      const from = randomAddress()
      await joinWithoutChallenge(a, from)
      // dials to an address nobody holds: answered "Peer not found" while allowed
      assertBurst(await burst(a, 20, 'ss-dial', from, randomAddress(), randomUUID()), ERRORS.PEER_NOT_FOUND)
      const b = await opened.client(server.url, 'v2')
      const fromB = randomAddress()
      await joinWithoutChallenge(b, fromB)
      assert.deepEqual(await b.request('ss-dial', fromB, randomAddress(), randomUUID()), [ERRORS.PEER_NOT_FOUND])
      // a's bucket refills at the rate; b dials a for real
      assert.equal(await untilAllowed(a, 'ss-dial', from, randomAddress(), randomUUID()), ERRORS.PEER_NOT_FOUND)
      const r = await relay(b, fromB, a, from)
      await r.dialerMaySend
      send(b, r.forward, [Buffer.from('through')])
      assert.equal((await within(r.atListener.done, 'the relayed stream')).bytes, 7)
    } finally {
      await opened.close()
    }
  })

  it('the real libp2p-websocket-star@0.10.2 client, listening and dialling, never hits the defaults (CLI, crypto challenge on)', async () => {
    const cli = await startCli([])
    const peers: OldPeer[] = []
    try {
      for (let i = 0; i < 3; i++) peers.push(await listen(cli))
      for (const peer of peers) peer.onConnection((conn) => { pull(conn, conn) })
      // every peer dials every other twice, all at once
      const echoes = peers.flatMap((from) => peers.filter((to) => to !== from).flatMap((to) => [0, 1].map(async (n) => {
        const conn = await from.dial(to.address)
        const sent = Buffer.from(`${from.id} to ${to.id}, ${n}`)
        const back = await within(new Promise<Buffer[]>((resolve, reject) => {
          pull(pull.values([sent]), conn, pull.collect((err, chunks) => {
            if (err !== null && err !== undefined) reject(err instanceof Error ? err : new Error(inspect(err)))
            else resolve(chunks)
          }))
        }), 'the echo')
        assert.deepEqual(Buffer.concat(back), sent)
      })))
      await Promise.all(echoes)
      const m = await scrape(cli.uri)
      assert.equal(sampleOr(m, 'rendezvous_joins_total_failure'), 0)
      assert.equal(sampleOr(m, 'rendezvous_joins_total_success'), 3)
      assert.equal(sampleOr(m, 'rendezvous_dials_total_failure'), 0)
      assert.equal(sampleOr(m, 'rendezvous_dials_total_success'), 12)
      for (const peer of peers) assert.deepEqual(peer.errors, [])
    } finally {
      await Promise.all(peers.map(async (peer) => { try { await peer.close() } catch {} }))
      await cli.stop('SIGKILL')
    }
  })
})

describe('time without an address (joinTimeoutMS)', () => {
  const TIMEOUT_MS = 1500
  // the limits are swept once a second; then a loaded machine's scheduling
  const LATE_MS = 1000 + 2000

  it('disconnects a connection that never joins, not one that joined, and gives one that leaves its last address a fresh timeout', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false, metrics: true, joinTimeoutMS: TIMEOUT_MS })
      const closedFor = async (): Promise<number> => sampleOr(await scrape(server.url), 'rendezvous_connections_closed_total', { reason: 'join timeout' })
      // opened first, so it is always the oldest
      const member = await opened.client(server.url, 'v2')
      const memberGone = disconnection(member)
      const address = randomAddress()
      await joinWithoutChallenge(member, address)
      // the server counts from the handshake, which comes after this
      const openedAt = Date.now()
      const idle = await Promise.all([opened.client(server.url, 'v4'), opened.client(server.url, 'v2', 'polling')])
      const idleGone = await within(Promise.all(idle.map(disconnection)), 'the idle connections to be disconnected')
      for (const { at } of idleGone) {
        assert.ok(at - openedAt >= TIMEOUT_MS, `disconnected after ${at - openedAt} ms`)
        assert.ok(at - openedAt <= TIMEOUT_MS + LATE_MS, `disconnected after ${at - openedAt} ms`)
      }
      assert.equal(await closedFor(), 2)
      // older than the timeout, and joined: still here, and still served
      assert.equal(member.socket.connected, true)
      assert.equal((await join(member, address))[0], null)

      member.emit('ss-leave', address)
      const leftAt = Date.now()
      const { at } = await within(memberGone, 'the connection that left to be disconnected')
      process.stdout.write(`# join timeout ${TIMEOUT_MS} ms: idle connections closed after ${idleGone.map((g) => g.at - openedAt).join(' and ')} ms, the one that left after ${at - leftAt} ms\n`)
      // a timeout counted from the connection's start would have closed it at the next sweep
      assert.ok(at - leftAt >= TIMEOUT_MS, `disconnected ${at - leftAt} ms after it left`)
      assert.ok(at - leftAt <= TIMEOUT_MS + LATE_MS, `disconnected ${at - leftAt} ms after it left`)
      assert.equal(await closedFor(), 3)
      await until(() => server.stats().connections === 0 && server.stats().limitedConnections === 0, 'nothing is left of them')
    } finally {
      await opened.close()
    }
  })
})

describe('message size (maxMessageBytes)', () => {
  for (const [version, transport] of [['v2', 'websocket'], ['v2', 'polling'], ['v4', 'websocket'], ['v4', 'polling']] as const) {
    it(`closes a socket.io-client ${version} ${transport} connection that sends a message over the limit; others carry on`, async () => {
      const opened = new Opened()
      try {
        const server = await opened.server({ cryptoChallenge: false, maxMessageBytes: 64 * KiB })
        const bystander = await opened.client(server.url, 'v4')
        const bystanderAddress = randomAddress()
        await joinWithoutChallenge(bystander, bystanderAddress)
        const big = await opened.client(server.url, version, transport)
        await joinWithoutChallenge(big, randomAddress())
        // just under the limit passes
        assert.deepEqual(await big.request('ss-dial', 'x'.repeat(60 * KiB)), [ERRORS.INVALID_REQUEST])
        const gone = disconnection(big)
        big.emit('socket.io-pull-stream.queue.x', Buffer.alloc(128 * KiB))
        await within(gone, 'the connection to close')
        await until(() => server.stats().peers === 1 && server.stats().connections === 1, 'its address is released')
        assert.deepEqual(await join(bystander, bystanderAddress), [null, null, []])
      } finally {
        await opened.close()
      }
    })
  }

  it('lets relayed chunks of 1 MiB through with the default, over websocket and polling', async () => {
    const opened = new Opened()
    try {
      const server = await opened.server({ cryptoChallenge: false })
      const pairs: Array<[[ClientVersion, Transport], [ClientVersion, Transport]]> = [
        [['v2', 'websocket'], ['v4', 'websocket']],
        [['v4', 'websocket'], ['v2', 'polling']],
        [['v2', 'polling'], ['v4', 'polling']],
        [['v4', 'polling'], ['v2', 'websocket']]
      ]
      for (const [senderKind, receiverKind] of pairs) {
        const what = `1 MiB chunks from ${senderKind.join(' ')} to ${receiverKind.join(' ')}`
        const a = await opened.client(server.url, ...senderKind)
        const b = await opened.client(server.url, ...receiverKind)
        const from = randomAddress()
        const to = randomAddress()
        await joinWithoutChallenge(a, from)
        await joinWithoutChallenge(b, to)
        const r = await relay(a, from, b, to)
        await r.dialerMaySend
        const chunks = [...makeChunks(3, MiB)]
        if (senderKind[1] === 'websocket') {
          send(a, r.forward, chunks)
        } else {
          // a polling client puts everything pending in one request, which
          // the limit bounds too: one chunk at a time
          for (const [i, chunk] of chunks.entries()) {
            a.emit(`${STREAM}queue.${r.forward}`, chunk)
            await until(() => r.atListener.received === (i + 1) * MiB, `chunk ${i + 1} of ${what}`)
          }
          send(a, r.forward, [])
        }
        const received = await within(r.atListener.done, what)
        assert.deepEqual(received, { bytes: 3 * MiB, chunks: 3, sha256: sha256(chunks), end: true }, what)
        assert.equal(a.socket.connected && b.socket.connected, true, what)
      }
    } finally {
      await opened.close()
    }
  })
})

describe('the command line', () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--maxUnsentBytes=0'], {}, /--maxUnsentBytes\b.*"0"/],
    [['--maxConnectionsPerIP=-1'], {}, /--maxConnectionsPerIP\b.*"-1"/],
    [['--joinTimeoutMS=soon'], {}, /--joinTimeoutMS\b.*"soon"/],
    [['--pingIntervalMS=0'], {}, /--pingIntervalMS\b/],
    [[], { MAX_PEERS: 'lots' }, /\bMAX_PEERS\b.*"lots"/],
    [[], { MAX_MESSAGE_BYTES: '1.5' }, /\bMAX_MESSAGE_BYTES\b.*"1\.5"/]
  ]
  for (const [args, env, name] of cases) {
    it(`${[...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')} exits 2 with one line naming it`, async () => {
      assertConfigError(await runCli(args, env), name)
    })
  }
})
