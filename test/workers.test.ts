/**
 * `--workers <n>`: one port served by several processes of one machine,
 * clustered through a real redis-server, as an operator runs it: the CLI in a
 * child process, real socket.io-client 2.x (polling) and 4.x (websocket)
 * clients, and the worker processes seen from outside through procfs (which
 * process holds which connection, as `ss -tnp` shows it).
 *
 * The tests of the running server share one CLI and run in order; the ones
 * that stop a worker or the whole server come last.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { connect as connectTcp } from 'node:net'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { connect, type Client, type ClientVersion, type Transport } from './helpers/clients.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { childrenOf, tcpConnectionsOf } from './helpers/procfs.js'
import { NO_REDIS, startRedis, type RedisProcess } from './helpers/redis.js'
import { assertConfigError, runCli, startCli, type CliServer } from './helpers/server.js'
import { canBind } from './helpers/ports.js'
import { until, within } from './helpers/wait.js'

const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url))
const ARTIFACTS = new URL('../../test-artifacts/workers/', import.meta.url)

/** The Engine.IO session id of a client: sticky routes any request that names it to the worker holding the session. */
function sessionOf (client: Client): string {
  return (client.socket as unknown as { io: { engine: { id: string } } }).io.engine.id
}

/**
 * The status line of the answer to `request`, sent as two writes a turn of
 * the event loop apart: the worker must get the second piece, which reaches
 * the primary's socket while the primary hands the connection over.
 */
async function inTwoPieces (port: number, request: string, splitAt: number): Promise<string> {
  return await within(new Promise<string>((resolve, reject) => {
    const socket = connectTcp(port, '127.0.0.1')
    socket.setNoDelay(true)
    let answer = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => { answer += chunk })
    socket.on('error', reject)
    socket.on('close', () => { resolve(answer.split('\r\n', 1)[0] ?? '') })
    socket.on('connect', () => {
      socket.write(request.slice(0, splitAt))
      setImmediate(() => { socket.write(request.slice(splitAt)) })
    })
  }), 'the answer to a request in two pieces', 5000)
}

/** `client` learns of `address`, from its join's answer or from a `ws-peer`. */
async function hears (client: Client, answer: string[], address: string): Promise<void> {
  if (!answer.includes(address)) await client.discovers(address)
}

describe('--workers: bad configuration exits 2 with one line naming it', () => {
  const redis = ['--redis=redis://127.0.0.1:6379']
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['--workers=0', ['--workers=0', ...redis], {}, /--workers\b.*"0"/],
    ['--workers=abc', ['--workers=abc', ...redis], {}, /--workers\b.*"abc"/],
    ['--workers=1.5', ['--workers=1.5', ...redis], {}, /--workers\b.*"1\.5"/],
    ['--workers without a value', ['--workers', ...redis], {}, /--workers\b/],
    ['WORKERS=-1', [...redis], { WORKERS: '-1' }, /\bWORKERS\b.*"-1"/],
    ['--workers without --redis', ['--workers=2'], {}, /--workers\b.*--redis/],
    ['WORKERS without REDIS_URL', [], { WORKERS: '2' }, /\bWORKERS\b.*--redis.*REDIS_URL/],
    // the files are read but not checked as TLS material before --workers refuses them
    ['--workers with TLS', ['--workers=2', ...redis, `--key=${PACKAGE_JSON}`, `--cert=${PACKAGE_JSON}`], {}, /--workers\b.*TLS.*proxy/]
  ]
  for (const [name, args, env, names] of cases) {
    it(name, async () => { assertConfigError(await runCli(args, env), names) })
  }
})

describe('--workers=2 with a real Redis', { skip: NO_REDIS }, () => {
  let redis: RedisProcess | undefined
  /** Set by `before`; undefined in `after` only if it failed. */
  let started: CliServer | undefined
  /** The CLI `before` started, for the tests (which run only once it has). */
  const cli = (): CliServer => {
    assert.ok(started !== undefined, 'the CLI started')
    return started
  }
  const clients: Client[] = []
  /** The two workers: the one the polling client went to, and the other. */
  let pollingWorker: number
  let otherWorker: number
  let polling: Client
  let websocket: Client
  const pollingAddress = randomAddress()
  const websocketAddress = randomAddress()

  const open = async (version: ClientVersion, transport: Transport): Promise<Client> => {
    const client = await connect(cli().uri, version, transport)
    clients.push(client)
    return client
  }
  /** Established client connections `pid` holds on the server's port. */
  const held = (pid: number): number => tcpConnectionsOf(pid, cli().port).length
  const workers = (): number[] => childrenOf(cli().proc.pid ?? 0).sort((a, b) => a - b)
  /** `/metrics` as served by the worker holding `client`'s session. */
  const metricsVia = async (client: Client): Promise<{ status: number, text: string }> => {
    const res = await within(fetch(`${cli().uri}/metrics?sid=${sessionOf(client)}`), '/metrics')
    return { status: res.status, text: await res.text() }
  }

  before(async () => {
    redis = await startRedis()
    started = await startCli(['--workers=2', `--redis=${redis.url}`, '--disableCryptoChallenge'], { DEBUG: process.env.WORKERS_TEST_DEBUG })
  })

  after(async () => {
    await Promise.all(clients.map(async (client) => { await client.close() }))
    const server = started
    if (server !== undefined) {
      const pids = workers()
      await server.stop('SIGKILL')
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
      // what the primary and its workers printed, for a failure in CI
      mkdirSync(ARTIFACTS, { recursive: true })
      const { stdout, stderr } = server.output()
      writeFileSync(new URL('cli.log', ARTIFACTS), `${stdout}\n--- stderr ---\n${stderr}`)
    }
    await redis?.stop()
  })

  it('prints its start line once both workers serve, and runs them as its children', () => {
    const { stdout } = cli().output()
    assert.equal(stdout.match(/Listening on: /g)?.length, 1, stdout)
    assert.match(stdout, new RegExp(`^Listening on: http://127\\.0\\.0\\.1:${cli().port}$`, 'm'))
    assert.equal(workers().length, 2)
  })

  it('a polling client and a websocket client on different workers see each other', async () => {
    const pids = workers()
    polling = await open('v2', 'polling')
    // its long poll waits on the worker holding its session
    let holding: number[] = []
    await until(() => {
      holding = pids.filter((pid) => held(pid) > 0)
      return holding.length === 1
    }, 'one worker holds the polling client')
    pollingWorker = holding[0] ?? 0
    otherWorker = pids.find((pid) => pid !== pollingWorker) ?? 0
    websocket = await open('v4', 'websocket')
    await until(() => held(otherWorker) > 0, 'the websocket client is on the other worker')

    const pollingAnswer = await joinWithoutChallenge(polling, pollingAddress)
    const websocketAnswer = await joinWithoutChallenge(websocket, websocketAddress)
    await hears(websocket, websocketAnswer, pollingAddress)
    await hears(polling, pollingAnswer, websocketAddress)
  })

  it('new connections are spread over both workers, and /metrics on either one counts them all', async () => {
    for (let i = 0; i < 4; i++) await open('v4', 'websocket')
    // two more websockets each (least connections first)
    await until(() => held(otherWorker) >= 3 && held(pollingWorker) >= 2, 'each worker holds its share of the clients')
    for (const via of [polling, websocket]) {
      const { status, text } = await metricsVia(via)
      assert.equal(status, 200)
      assert.match(text, /^rendezvous_connections 6$/m, 'the connections of both workers')
      assert.match(text, /^rendezvous_peers{transport="websocket-star"} 2$/m, 'the addresses joined on both workers')
    }
  })

  it('a request whose bytes arrive in two pieces is answered whole', async () => {
    const request = 'GET /health HTTP/1.1\r\nHost: rendezvous\r\nConnection: close\r\n\r\n'
    // the primary reads "GET " and hands the connection over; the rest is the worker's to read
    for (let i = 0; i < 20; i++) assert.equal(await inTwoPieces(cli().port, request, 4), 'HTTP/1.1 200 OK')
  })

  it('/metrics answers 500, not never, when a worker cannot answer for its figures', async () => {
    process.kill(pollingWorker, 'SIGSTOP')
    try {
      const startedAt = Date.now()
      const { status } = await metricsVia(websocket)
      assert.equal(status, 500)
      assert.ok(Date.now() - startedAt < 10_000, `answered in ${Date.now() - startedAt} ms`)
    } finally {
      process.kill(pollingWorker, 'SIGCONT')
    }
    // the late answer of the stopped worker harms nothing
    assert.equal((await metricsVia(websocket)).status, 200)
    assert.equal((await metricsVia(polling)).status, 200)
  })

  it('a worker killed with SIGKILL is restarted: a new process serves and new clients see the others', async () => {
    const victim = pollingWorker
    const gone = polling.next('disconnect')
    process.kill(victim, 'SIGKILL')
    // the polling client's session died with its worker
    await gone
    // at once if it had run for 10 s, else after a second; a loaded machine may take that long to get here
    const logged = new RegExp(`^rendezvous: worker ${victim} exited \\(signal SIGKILL\\), restarting it( in 1 s)?$`, 'm')
    await until(() => logged.test(cli().output().stderr), 'the restart is logged', 5000)
    let replacement = 0
    await until(() => {
      replacement = Number(new RegExp(`worker (\\d+) serves, in place of worker ${victim}\\n`).exec(cli().output().stderr)?.[1] ?? 0)
      return replacement !== 0
    }, 'the new worker serves')
    assert.deepEqual(workers(), [otherWorker, replacement].sort((a, b) => a - b))

    const health = await fetch(`${cli().uri}/health`)
    assert.equal(health.status, 200)
    await health.arrayBuffer()

    // the new worker has no session yet, so both go to it
    const polling2 = await open('v2', 'polling')
    const websocket2 = await open('v4', 'websocket')
    await until(() => held(replacement) >= 1, 'the new worker holds connections')
    const address2 = randomAddress()
    const websocketAddress2 = randomAddress()
    const answer2 = await joinWithoutChallenge(polling2, address2)
    const websocketAnswer2 = await joinWithoutChallenge(websocket2, websocketAddress2)
    await hears(polling2, answer2, websocketAddress)
    await hears(polling2, answer2, websocketAddress2)
    await hears(websocket2, websocketAnswer2, address2)
    await hears(websocket, [], address2)
    await hears(websocket, [], websocketAddress2)
  })

  it('SIGTERM on the primary disconnects every client, stops every worker, releases the port and exits 0', async () => {
    const pids = workers()
    const connected = clients.filter((client) => client.socket.connected)
    assert.ok(connected.length >= 2)
    const disconnected = Promise.all(connected.map(async (client) => await client.next('disconnect')))
    const exit = await within(cli().stop('SIGTERM'), 'the primary to exit')
    assert.equal(exit.code, 0, JSON.stringify(exit))
    assert.equal(exit.signal, null)
    assert.match(exit.stdout, /^Received SIGTERM, stopping 2 workers/m)
    assert.match(exit.stdout, /^Rendezvous server stopped$/m)
    await disconnected
    for (const pid of pids) assert.equal(existsSync(`/proc/${pid}`), false, `worker ${pid} has exited`)
    await canBind(cli().port)
  })
})
