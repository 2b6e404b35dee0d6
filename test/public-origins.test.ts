/**
 * `--allowedOrigins` and `--requireOrigin`: a handshake from another origin
 * is refused (and counted), CORS answers only the allowed origins, and peers
 * without an Origin (Node.js) get in unless one is required. In Chromium from
 * two origins, and with Node clients over websocket and polling.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, request, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { NO_CHROMIUM, launchChromium } from './helpers/browser.js'
import { Cleanup } from './helpers/cleanup.js'
import { connect } from './helpers/clients.js'
import { sample, scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'
import { within } from './helpers/wait.js'

/** socket.io-client 4.x's browser bundle, which its `exports` do not name. */
const BUNDLE = fileURLToPath(new URL('../../node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url))
const ALLOWED = 'http://app.example'

/** The `Access-Control-Allow-Origin` the server answers a polling handshake from `origin`. */
async function corsAnswer (url: string, origin: string): Promise<string | undefined> {
  return await new Promise((resolve, reject) => {
    const req = request(`${url}/socket.io/?EIO=4&transport=polling`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET' } }, (res) => {
      res.resume()
      const allowed = res.headers['access-control-allow-origin']
      resolve(typeof allowed === 'string' ? allowed : undefined)
    })
    req.on('error', reject)
    req.end()
  })
}

for (const transport of ['websocket', 'polling'] as const) {
  describe(`--allowedOrigins and --requireOrigin with Node clients, over ${transport}`, () => {
    const cleanup = new Cleanup()
    after(async () => { await cleanup.run() })

    it('an allowed Origin and no Origin get in, another Origin is refused and counted', async () => {
      const server = await startServer({ allowedOrigins: [ALLOWED], metrics: true })
      cleanup.add(async () => { await server.stop() })
      const allowed = await connect(server.url, 'v4', transport, { extraHeaders: { origin: ALLOWED } })
      cleanup.add(async () => { await allowed.close() })
      const node = await connect(server.url, 'v4', transport)
      cleanup.add(async () => { await node.close() })
      await assert.rejects(connect(server.url, 'v4', transport, { extraHeaders: { origin: 'http://evil.example' } }))
      assert.equal(sample(await scrape(server.url), 'rendezvous_refusals_total', { reason: 'origin' }), 1)
    })

    it('--requireOrigin refuses a peer without an Origin', async () => {
      const server = await startServer({ allowedOrigins: [ALLOWED], requireOrigin: true })
      cleanup.add(async () => { await server.stop() })
      await assert.rejects(connect(server.url, 'v4', transport))
      const allowed = await connect(server.url, 'v4', transport, { extraHeaders: { origin: ALLOWED } })
      cleanup.add(async () => { await allowed.close() })
    })
  })
}

describe('CORS with --allowedOrigins', () => {
  it('answers only the allowed origins; without the option, any', async () => {
    const limited = await startServer({ allowedOrigins: [ALLOWED] })
    const open = await startServer()
    try {
      assert.equal(await corsAnswer(limited.url, ALLOWED), ALLOWED)
      assert.equal(await corsAnswer(limited.url, 'http://evil.example'), undefined)
      assert.equal(await corsAnswer(open.url, 'http://evil.example'), 'http://evil.example')
    } finally {
      await limited.stop()
      await open.stop()
    }
  })
})

/** A page that loads socket.io-client 4.x and offers `tryConnect(url, transport)`, served on `host`. */
async function serveSite (host: string): Promise<{ origin: string, close: () => Promise<void> }> {
  const bundle = readFileSync(BUNDLE)
  const page = `<!doctype html><title>peer</title><script src="/socket.io.js"></script><script>
    window.tryConnect = (url, transport) => new Promise((resolve) => {
      const socket = io(url, { transports: [transport], reconnection: false, forceNew: true })
      socket.on('connect', () => { socket.disconnect(); resolve('connected') })
      socket.on('connect_error', () => { socket.close(); resolve('refused') })
    })
  </script>`
  const site: HttpServer = createServer((req, res) => {
    if (req.url === '/socket.io.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle)
    else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page)
  })
  await new Promise<void>((resolve) => { site.listen(0, '127.0.0.1', resolve) })
  return {
    origin: `http://${host}:${(site.address() as AddressInfo).port}`,
    close: async () => {
      site.closeAllConnections()
      await new Promise<void>((resolve) => { site.close(() => { resolve() }) })
    }
  }
}

describe('--allowedOrigins in Chromium, from two origins', { skip: NO_CHROMIUM }, () => {
  const cleanup = new Cleanup()
  let browser: Browser | undefined
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  let allowedSite = ''
  let otherSite = ''
  before(async () => {
    const first = await serveSite('127.0.0.1')
    cleanup.add(first.close)
    const second = await serveSite('localhost')
    cleanup.add(second.close)
    allowedSite = first.origin
    otherSite = second.origin
    const started = await startServer({ allowedOrigins: [allowedSite] })
    server = started
    cleanup.add(async () => { await started.stop() })
    const launched = await launchChromium()
    browser = launched
    cleanup.add(async () => { await launched.close() })
  })
  after(async () => { await cleanup.run() })

  async function attempt (site: string, transport: string): Promise<string> {
    assert.ok(browser !== undefined && server !== undefined)
    const page: Page = await browser.newPage()
    try {
      await page.goto(`${site}/`)
      const url = server.url
      return await within(page.evaluate(async ({ url, transport }) => {
        const tryConnect = (globalThis as unknown as { tryConnect: (url: string, transport: string) => Promise<string> }).tryConnect
        return await tryConnect(url, transport)
      }, { url, transport }), `a ${transport} connection from ${site}`)
    } finally {
      await page.close()
    }
  }

  for (const transport of ['websocket', 'polling']) {
    it(`the allowed origin connects over ${transport}, the other is refused`, async () => {
      assert.equal(await attempt(allowedSite, transport), 'connected')
      assert.equal(await attempt(otherSite, transport), 'refused')
    })
  }
})
