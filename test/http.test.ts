/**
 * The HTTP routes next to Socket.IO: the status page, /metrics, /health, and
 * everything else.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/index.js'
import { STARS } from '../src/protocol.js'
import { connect, type Client } from './helpers/clients.js'
import { request } from './helpers/http.js'
import { randomAddress, randomPeerId } from './helpers/keys.js'
import { onlySample, sample, scrape, type Scraped } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'
import { canBind } from './helpers/ports.js'
import { until } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

const WS = { transport: 'websocket-star' }
const WEBRTC = { transport: 'webrtc-star' }

/** The metric names of the old server, which dashboards already use; the first four now with a series per transport. */
const BY_TRANSPORT = [
  'rendezvous_peers',
  'rendezvous_joins_total',
  'rendezvous_joins_total_success',
  'rendezvous_joins_total_failure'
]
const OLD_METRICS = [
  ...BY_TRANSPORT,
  'rendezvous_dials_total',
  'rendezvous_dials_total_success',
  'rendezvous_dials_total_failure'
]

/** The text of the element with `id` on the status page. */
function figure (html: string, id: string): string {
  const match = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html)
  assert.ok(match !== null, `the page has an element with id="${id}"`)
  return match[1]
}


describe('GET / (the status page)', () => {
  let server: Server
  const clients: Client[] = []
  before(async () => { server = await startServer({ cryptoChallenge: false }) })
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await server.stop()
  })

  const page = async (headers: Record<string, string> = {}): Promise<string> => {
    const res = await request(`${server.url}/`, { headers })
    assert.equal(res.status, 200)
    assert.match(String(res.headers['content-type']), /^text\/html\b/)
    return res.body
  }

  it('shows the websocket-star address of the Host the request was sent to', async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ host: `127.0.0.1:${server.info.port}` }, `/ip4/127.0.0.1/tcp/${server.info.port}/ws/p2p-websocket-star`],
      [{ host: 'example.com' }, '/dns4/example.com/tcp/80/ws/p2p-websocket-star'],
      [{ host: '[::1]:9090' }, '/ip6/::1/tcp/9090/ws/p2p-websocket-star'],
      // behind a TLS-terminating proxy
      [{ host: 'example.com', 'x-forwarded-proto': 'https' }, '/dns4/example.com/tcp/443/wss/p2p-websocket-star']
    ]
    for (const [headers, address] of cases) {
      const html = await page(headers)
      assert.equal(figure(html, 'addr'), address, JSON.stringify(headers))
      assert.equal(figure(html, 'webrtc-star-addr'), address.replace(/p2p-websocket-star$/, 'p2p-webrtc-star'), JSON.stringify(headers))
    }
  })

  it('escapes the Host header into HTML', async () => {
    const html = await page({ host: '<script>alert(1)</script>' })
    assert.ok(!html.includes('<script>'), 'no raw <script> on the page')
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'the Host header is shown escaped')
  })

  it('shows the live number of peers', async () => {
    assert.equal(figure(await page(), 'peers'), '0')
    const client = await connect(server.url, 'v4')
    clients.push(client)
    const address = randomAddress()
    const [err] = await client.request('ss-join', address, '')
    assert.equal(err, null)
    assert.equal(figure(await page(), 'peers'), '1')
    client.emit('ss-leave', address)
    await until(() => server.stats().peers === 0, 'the peer leaves')
    assert.equal(figure(await page(), 'peers'), '0')
  })

  it('shows the live number of webrtc-star peers apart', async () => {
    assert.equal(figure(await page(), 'webrtc-star'), '0')
    const client = await connect(server.url, 'v4')
    clients.push(client)
    const address = `/ip4/127.0.0.1/tcp/${server.info.port}/ws/p2p-webrtc-star/p2p/${randomPeerId()}`
    client.emit('ss-join', address)
    await until(() => server.stats().peers === 1, 'the webrtc-star peer joins')
    assert.equal(figure(await page(), 'webrtc-star'), '1')
    assert.equal(figure(await page(), 'peers'), '0', 'not a websocket-star peer')
    client.emit('ss-leave', address)
    await until(() => server.stats().peers === 0, 'the peer leaves')
    assert.equal(figure(await page(), 'webrtc-star'), '0')
  })

  it('loads nothing from elsewhere', async () => {
    const html = await page()
    const external = html.match(/\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//gi)
    assert.equal(external, null, `external assets: ${String(external)}`)
    assert.doesNotMatch(html, /url\(\s*["']?\s*(?:https?:)?\/\//i)
    assert.doesNotMatch(html, /@import/i)
  })
})

describe('GET /metrics', () => {
  const servers: Server[] = []
  const clients: Client[] = []
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await Promise.all(servers.map(async (s) => { await s.stop() }))
  })
  const serve = async (options: Parameters<typeof startServer>[0]): Promise<Server> => {
    const server = await startServer(options)
    servers.push(server)
    return server
  }
  const open = async (server: Server): Promise<Client> => {
    const client = await connect(server.url, 'v2')
    clients.push(client)
    return client
  }
  const metricsOf = async (server: Server): Promise<Scraped> => {
    const m = await scrape(server.url)
    assert.match(m.contentType, /^text\/plain\b/)
    return m
  }

  it('exports every metric of the old server and the process metrics, in Prometheus text', async () => {
    const server = await serve({ metrics: true })
    const m = await metricsOf(server)
    for (const name of OLD_METRICS) {
      assert.match(m.text, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), `${name} is declared`)
      if (!BY_TRANSPORT.includes(name)) {
        assert.equal(onlySample(m, name), 0, `${name} starts at 0`)
        continue
      }
      for (const transport of STARS) assert.equal(sample(m, name, { transport }), 0, `${name}{transport="${transport}"} starts at 0`)
    }
    assert.match(m.text, /^# TYPE rendezvous_peers gauge$/m)
    assert.ok(onlySample(m, 'process_cpu_user_seconds_total') >= 0)
    assert.ok(onlySample(m, 'process_resident_memory_bytes') > 0)
  })

  it('counts joins, successful and failed, and peers online', async () => {
    const server = await serve({ metrics: true, cryptoChallenge: false, strictMultiaddr: true })
    const client = await open(server)
    const [ok] = await client.request('ss-join', randomAddress(), '')
    assert.equal(ok, null)
    const [refused] = await client.request('ss-join', `/ip4/127.0.0.1/tcp/9090/ws/ipfs/${randomPeerId()}`, '')
    assert.equal(refused, ERRORS.INVALID_MULTIADDR)
    const m = await metricsOf(server)
    assert.equal(sample(m, 'rendezvous_joins_total', WS), 2)
    assert.equal(sample(m, 'rendezvous_joins_total_success', WS), 1)
    assert.equal(sample(m, 'rendezvous_joins_total_failure', WS), 1)
    assert.equal(sample(m, 'rendezvous_peers', WS), 1)
    for (const name of BY_TRANSPORT) assert.equal(sample(m, name, WEBRTC), 0, `no webrtc-star ${name}`)
    await client.close()
    await until(() => server.stats().peers === 0, 'the peer is gone')
    assert.equal(sample(await metricsOf(server), 'rendezvous_peers', WS), 0)
  })

  it('has only websocket-star series with --disableWebrtcStar', async () => {
    const server = await serve({ metrics: true, webrtcStar: false })
    const m = await metricsOf(server)
    for (const name of BY_TRANSPORT) {
      assert.equal(sample(m, name, WS), 0)
      assert.equal(m.samples.get(name)?.metrics.length, 1, `${name} has one series`)
    }
  })

  it('is 404 when metrics are off, as they are by default in the library', async () => {
    for (const server of [await serve({}), await serve({ metrics: false })]) {
      const res = await fetch(`${server.url}/metrics`)
      assert.equal(res.status, 404)
      await res.arrayBuffer()
    }
  })

  it('keeps the counts of two servers in one process apart', async () => {
    const a = await serve({ metrics: true, cryptoChallenge: false })
    const b = await serve({ metrics: true, cryptoChallenge: false })
    const client = await open(a)
    assert.equal((await client.request('ss-join', randomAddress(), ''))[0], null)
    const [mA, mB] = await Promise.all([metricsOf(a), metricsOf(b)])
    assert.equal(sample(mA, 'rendezvous_joins_total_success', WS), 1)
    assert.equal(sample(mA, 'rendezvous_peers', WS), 1)
    assert.equal(sample(mB, 'rendezvous_joins_total_success', WS), 0)
    assert.equal(sample(mB, 'rendezvous_peers', WS), 0)
  })
})

describe('other routes', () => {
  let server: Server
  before(async () => { server = await startServer({}) })
  after(async () => { await server.stop() })

  it('GET /health answers JSON with status, uptime and peers', async () => {
    const res = await fetch(`${server.url}/health`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/)
    const body = await res.json() as Record<string, unknown>
    assert.equal(body.status, 'ok')
    assert.equal(typeof body.uptime, 'number')
    assert.ok(Number.isFinite(body.uptime) && (body.uptime as number) >= 0)
    assert.equal(body.peers, 0)
  })

  it('an unknown path is 404', async () => {
    for (const path of ['/nope', '/metrics/extra', '/index.html']) {
      const res = await fetch(`${server.url}${path}`)
      assert.equal(res.status, 404, path)
      await res.arrayBuffer()
    }
  })

  it('POST / is 405', async () => {
    const res = await fetch(`${server.url}/`, { method: 'POST', body: 'x' })
    assert.equal(res.status, 405)
    await res.arrayBuffer()
  })
})

describe('stop()', () => {
  it('resolves and releases the port, even with a client connected', async () => {
    const server = await startServer({ cryptoChallenge: false })
    const client = await connect(server.url, 'v2')
    const port = server.info.port
    try {
      const gone = client.next('disconnect')
      await server.stop()
      await gone
      await canBind(port)
    } finally {
      await client.close()
      await server.stop()
    }
  })
})
