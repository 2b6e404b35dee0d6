/**
 * The `rendezvous` command as users run it: a child process configured by
 * flags and environment variables, stopped by signals.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { ERRORS, OPTION_SPECS } from '../src/index.js'
import { connect, type Client } from './helpers/clients.js'
import { request } from './helpers/http.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity, randomAddress, randomPeerId } from './helpers/keys.js'
import { assertConfigError, runCli, startCli, type CliServer } from './helpers/server.js'
import { canBind, freePort } from './helpers/ports.js'
import { until } from './helpers/wait.js'

const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url))

/** An address that parses but is not websocket-star: refused in strict mode. */
const plainWsAddress = (): string => `/ip4/127.0.0.1/tcp/9090/ws/ipfs/${randomPeerId()}`

/** Every CLI and client started so far; each suite stops them all when it ends, whatever happened. */
const clis: CliServer[] = []
const clients: Client[] = []
async function cleanup (): Promise<void> {
  await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
  await Promise.all(clis.splice(0).map(async (c) => { await c.stop('SIGKILL') }))
}

async function cli (args: string[] = [], env: Record<string, string> = {}): Promise<CliServer> {
  const server = await startCli(args, env)
  clis.push(server)
  return server
}

async function open (url: string, version: 'v2' | 'v4' = 'v2', extra: Record<string, unknown> = {}): Promise<Client> {
  const client = await connect(url, version, 'websocket', extra)
  clients.push(client)
  return client
}

async function metricsStatus (uri: string): Promise<number> {
  const res = await fetch(`${uri}/metrics`)
  await res.arrayBuffer()
  return res.status
}

describe('--help and --version', () => {
  after(cleanup)
  it('--help prints usage naming every flag and exits 0', async () => {
    const exit = await runCli(['--help'])
    assert.equal(exit.code, 0, JSON.stringify(exit))
    assert.match(exit.stdout, /^rendezvous \[options\]/)
    for (const name of ['--port', '--disableCryptoChallenge', '--refreshPeerListIntervalMS']) assert.ok(exit.stdout.includes(name), name)
    for (const spec of OPTION_SPECS) {
      assert.match(exit.stdout, new RegExp(`--${spec.flag}\\b`), `--${spec.flag} in the usage`)
      // env names may be wrapped over two lines by yargs
      assert.ok(exit.stdout.replace(/\s+/g, ' ').includes(`env ${spec.env}`), `${spec.env} in the usage`)
    }
    assert.equal(exit.stderr, '')
  })

  it('--version prints the version of package.json and exits 0', async () => {
    const { version } = JSON.parse(await readFile(PACKAGE_JSON, 'utf8')) as { version: string }
    const exit = await runCli(['--version'])
    assert.equal(exit.code, 0, JSON.stringify(exit))
    assert.equal(exit.stdout.trim(), version)
  })
})

describe('where it listens', () => {
  after(cleanup)
  it('--port=0 picks a free port, prints its uri, and peers can join there', async () => {
    const server = await cli(['--port=0', '--host=127.0.0.1'])
    assert.notEqual(server.port, 0)
    assert.match(server.output().stdout, new RegExp(`^Listening on: http://127\\.0\\.0\\.1:${server.port}$`, 'm'))
    const client = await open(server.uri, 'v2')
    const identity = await libp2pIdentity('Ed25519')
    assert.equal((await joinWithChallenge(client, addressOf(identity.id, server.port), identity)).answer[0], null)
  })

  it('PORT and HOST choose the port and interface', async () => {
    const port = await freePort()
    // all of 127/8 is loopback on Linux: a second address tells HOST apart from the test default
    const server = await cli([], { PORT: String(port), HOST: '127.0.0.2' })
    assert.equal(server.uri, `http://127.0.0.2:${port}`)
    const res = await fetch(`http://127.0.0.2:${port}/health`)
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`), 'not listening on 127.0.0.1')
  })

  it('a flag wins over its environment variable', async () => {
    const a = await cli(['--port=0'], { PORT: '1' })
    assert.notEqual(a.port, 1)
    // the variable is not even read: its bad value does not stop the command
    const b = await cli(['--port=0', '--host=127.0.0.1', '--disableMetrics=false'], { PORT: 'abc', HOST: '127.0.0.2', DISABLE_METRICS: '1' })
    assert.match(b.uri, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal(await metricsStatus(b.uri), 200)
  })
})

describe('defaults of the command', () => {
  after(cleanup)
  let server: CliServer
  let client: Client
  before(async () => {
    server = await cli()
    client = await open(server.uri, 'v4')
  })

  it('requires the crypto challenge', async () => {
    assert.deepEqual(await client.request('ss-join', randomAddress(server.port), ''), [ERRORS.NO_ID])
    const identity = await libp2pIdentity('Ed25519')
    assert.equal((await joinWithChallenge(client, addressOf(identity.id, server.port), identity)).answer[0], null)
    assert.doesNotMatch(server.output().stderr, /warning/i)
  })

  it('accepts only websocket-star addresses', async () => {
    assert.deepEqual(await client.request('ss-join', plainWsAddress(), ''), [ERRORS.INVALID_MULTIADDR])
  })

  it('serves metrics', async () => {
    const res = await fetch(`${server.uri}/metrics`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /^rendezvous_peers{transport="websocket-star"} \d+$/m)
  })
})

describe('environment variables', () => {
  after(cleanup)
  it('DISABLE_CRYPTO_CHALLENGE=1 lets peers join without a key, and warns that joins are not authenticated', async () => {
    const server = await cli([], { DISABLE_CRYPTO_CHALLENGE: '1' })
    const client = await open(server.uri, 'v2')
    const [err, , peers] = await client.request('ss-join', randomAddress(server.port), '')
    assert.equal(err, null)
    assert.ok(Array.isArray(peers))
    await until(() => /warning.*not authenticated/i.test(server.output().stderr), 'the warning on stderr')
    assert.equal(server.output().stderr.split('\n').filter((l) => /warning/i.test(l)).length, 1)
    // strict multiaddr mode is still on
    assert.deepEqual(await client.request('ss-join', plainWsAddress(), ''), [ERRORS.INVALID_MULTIADDR])
  })

  it('DISABLE_STRICT_MULTIADDR=1 accepts addresses that are not websocket-star', async () => {
    const server = await cli([], { DISABLE_STRICT_MULTIADDR: '1', DISABLE_CRYPTO_CHALLENGE: '1' })
    const client = await open(server.uri, 'v4')
    const [err] = await client.request('ss-join', plainWsAddress(), '')
    assert.equal(err, null)
  })

  it('DISABLE_METRICS takes 1/true/yes and 0/false/no', async () => {
    const cases: Array<[string, number]> = [['1', 404], ['true', 404], ['yes', 404], ['YES', 404], ['0', 200], ['false', 200], ['no', 200]]
    const servers = await Promise.all(cases.map(async ([value]) => await cli([], { DISABLE_METRICS: value })))
    for (const [i, [value, status]] of cases.entries()) {
      assert.equal(await metricsStatus(servers[i].uri), status, `DISABLE_METRICS=${value}`)
    }
  })

  it('a boolean flag takes the same words as its variable, and alone means "yes"', async () => {
    const cases: Array<[string, number]> = [['--disableMetrics', 404], ['--disableMetrics=1', 404], ['--disableMetrics=yes', 404], ['--disableMetrics=true', 404], ['--disableMetrics=0', 200], ['--disableMetrics=no', 200], ['--disableMetrics=false', 200]]
    const servers = await Promise.all(cases.map(async ([flag]) => await cli([flag])))
    for (const [i, [flag, status]] of cases.entries()) {
      assert.equal(await metricsStatus(servers[i].uri), status, flag)
    }
    const server = await cli(['--disableCryptoChallenge=1'])
    const client = await open(server.uri, 'v4')
    assert.equal((await client.request('ss-join', randomAddress(server.port), ''))[0], null, '--disableCryptoChallenge=1')
  })

  it('REFRESH_PEER_LIST_INTERVAL_MS sets how often peers are announced again', async () => {
    const server = await cli([], { REFRESH_PEER_LIST_INTERVAL_MS: '100', DISABLE_CRYPTO_CHALLENGE: '1' })
    const a = await open(server.uri, 'v2')
    const b = await open(server.uri, 'v4')
    await a.request('ss-join', randomAddress(server.port), '')
    const addressB = randomAddress(server.port)
    await b.request('ss-join', addressB, '')
    // at the default 10 s interval this would take 40 s
    await until(() => a.peerEvents.filter((x) => x === addressB).length >= 5, 'five announcements of B', 5_000)
  })
})

describe('bad configuration exits 2 with one line naming the option', () => {
  after(cleanup)
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['--port=abc', ['--port=abc'], {}, /--port\b.*abc/],
    ['--port=70000', ['--port=70000'], {}, /--port\b.*70000/],
    ['PORT=abc', [], { PORT: 'abc' }, /\bPORT\b.*abc/],
    ['--refreshPeerListIntervalMS=0', ['--refreshPeerListIntervalMS=0'], {}, /--refreshPeerListIntervalMS\b/],
    ['DISABLE_METRICS=maybe', [], { DISABLE_METRICS: 'maybe' }, /\bDISABLE_METRICS\b.*maybe/],
    ['--disableMetrics=maybe', ['--disableMetrics=maybe'], {}, /--disableMetrics\b.*maybe/],
    ['--cert and --key that do not exist', ['--cert=/missing/cert.pem', '--key=/missing/key.pem'], {}, /--(key|cert)\b.*\/missing\//],
    ['--key without --cert', [`--key=${PACKAGE_JSON}`], {}, /\bcert\b/],
    ['--cert without --key', [`--cert=${PACKAGE_JSON}`], {}, /\bkey\b/],
    ['--pfx that does not exist', ['--pfx=/missing/bundle.pfx'], {}, /--pfx\b.*\/missing\//],
    ['--trustProxy=nginx', ['--trustProxy=nginx'], {}, /--trustProxy\b.*nginx/],
    ['ALLOWED_ORIGINS=app.example', [], { ALLOWED_ORIGINS: 'app.example' }, /\bALLOWED_ORIGINS\b.*app\.example/],
    ['REQUIRE_ORIGIN=maybe', [], { REQUIRE_ORIGIN: 'maybe' }, /\bREQUIRE_ORIGIN\b.*maybe/],
    ['an unknown flag', ['--bogus'], {}, /\bbogus\b/]
  ]
  for (const [name, args, env, names] of cases) {
    it(name, async () => { assertConfigError(await runCli(args, env), names) })
  }

  it('a port already in use', async () => {
    const first = await cli()
    const exit = await runCli(['--host=127.0.0.1', `--port=${first.port}`])
    assertConfigError(exit, new RegExp(`127\\.0\\.0\\.1:${first.port}\\b.*EADDRINUSE`))
    // the first one is unharmed
    const res = await fetch(`${first.uri}/health`)
    assert.equal(res.status, 200)
    await res.arrayBuffer()
  })
})

describe('signals', () => {
  after(cleanup)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} disconnects every client, releases the port and exits 0`, async () => {
      const server = await cli(['--disableCryptoChallenge'])
      const old = await open(server.uri, 'v2')
      const current = await open(server.uri, 'v4')
      for (const client of [old, current]) {
        assert.equal((await client.request('ss-join', randomAddress(server.port), ''))[0], null)
      }
      const disconnected = Promise.all([old.next('disconnect'), current.next('disconnect')])
      const exit = await server.stop(signal)
      assert.equal(exit.code, 0, JSON.stringify(exit))
      assert.equal(exit.signal, null)
      await disconnected
      await canBind(server.port)
    })
  }
})

const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' })
const noOpenssl = openssl.error !== undefined || openssl.status !== 0 ? 'openssl is not installed: TLS tests skipped' : false

describe('TLS', { skip: noOpenssl }, () => {
  after(cleanup)
  let dir: string | undefined
  let key: string
  let cert: string
  let pfx: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rendezvous-tls-'))
    key = join(dir, 'key.pem')
    cert = join(dir, 'cert.pem')
    pfx = join(dir, 'bundle.pfx')
    const run = (args: string[]): void => {
      const result = spawnSync('openssl', args, { encoding: 'utf8' })
      assert.equal(result.status, 0, `openssl ${args.join(' ')}: ${result.stderr}`)
    }
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'])
    run(['pkcs12', '-export', '-inkey', key, '-in', cert, '-out', pfx, '-passout', 'pass:secret'])
  })
  after(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('--key and --cert serve the page over https and peers over wss', async () => {
    const server = await cli(['--key', key, '--cert', cert])
    assert.match(server.uri, /^https:\/\/127\.0\.0\.1:\d+$/)
    assert.match(server.output().stdout, new RegExp(`^Listening on: https://127\\.0\\.0\\.1:${server.port}$`, 'm'))
    const res = await request(`${server.uri}/`, { insecure: true })
    assert.equal(res.status, 200)
    assert.ok(res.body.includes(`/ip4/127.0.0.1/tcp/${server.port}/wss/p2p-websocket-star`), 'the page shows the wss address')
    const client = await open(server.uri, 'v4', { rejectUnauthorized: false })
    const identity = await libp2pIdentity('Ed25519')
    assert.equal((await joinWithChallenge(client, addressOf(identity.id, server.port), identity)).answer[0], null)
  })

  it('--pfx with --passphrase serves https, and so do PFX and PFX_PASSPHRASE', async () => {
    const servers = [await cli(['--pfx', pfx, '--passphrase', 'secret']), await cli([], { PFX: pfx, PFX_PASSPHRASE: 'secret' })]
    for (const server of servers) {
      assert.match(server.uri, /^https:\/\//)
      const res = await request(`${server.uri}/health`, { insecure: true })
      assert.equal(res.status, 200)
    }
  })

  it('a wrong passphrase exits 2 with one line', async () => {
    const exit = await runCli(['--host=127.0.0.1', '--port=0', '--pfx', pfx, '--passphrase', 'wrong'])
    assertConfigError(exit, /\b(pfx|passphrase)\b/i)
  })

  it('a certificate given as the key exits 2 with one line', async () => {
    const exit = await runCli(['--host=127.0.0.1', '--port=0', '--key', cert, '--cert', key])
    assertConfigError(exit, /\b(key|cert)\b/i)
  })
})
