/**
 * The server as browsers meet it, in headless Chromium: the status page on a
 * phone, and browser peers with socket.io-client 2.x's own bundle (what
 * libp2p-websocket-star@0.10.2 ships) joining, discovering each other and
 * relaying binary streams, over websocket and over polling. Skips when
 * Chromium is not installed.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { NO_CHROMIUM, PHONE, callPage, foreignRequests, launchChromium, recordRequests, serveSite, type Site } from './helpers/browser.js'
import { connect, type Client } from './helpers/clients.js'
import { randomAddress } from './helpers/keys.js'
import { startServer } from './helpers/server.js'
import { makeChunks, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

const require = createRequire(import.meta.url)
const MiB = 1024 * 1024
const CHUNK_BYTES = 16 * 1024
/** 1 MiB a direction: polling sends what is pending in one request, which must stay under the server's 4 MiB message limit. */
const CHUNKS = MiB / CHUNK_BYTES

/** Read from the source tree: the build compiles only TypeScript into dist/. */
const PEER_PAGE = fileURLToPath(new URL('../../test/fixtures/peer.html', import.meta.url))
const SCREENSHOT = fileURLToPath(new URL('../../test-artifacts/status-page.png', import.meta.url))
const VERSION = readVersion()
/** Every test reports as skipped, with the reason, where Chromium is missing; the hooks then do nothing. */
const skip = NO_CHROMIUM

/** The version package.json names. */
function readVersion (): string {
  const manifest: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  assert.ok(typeof manifest === 'object' && manifest !== null && 'version' in manifest && typeof manifest.version === 'string', 'package.json names a version')
  return manifest.version
}

/** What the peer page puts on `window.peer`: its methods, and the promise of the listener's streams. */
type PeerGlobal = typeof globalThis & { peer: { listened: Promise<unknown> } }

/** Calls `window.peer[method](...args)` in `page` and resolves with its (awaited) result. */
async function call<T = unknown> (page: Page, method: string, ...args: unknown[]): Promise<T> {
  return await callPage<T>(page, 'peer', method, ...args)
}

/** The peer page and socket.io-client 2.x's bundle, read at each request. */
async function servePeerPage (): Promise<Site> {
  return await serveSite({
    '/': { type: 'text/html; charset=utf-8', body: () => readFileSync(PEER_PAGE) },
    '/socket.io.js': { type: 'text/javascript; charset=utf-8', body: () => readFileSync(require.resolve('socket.io-client-v2/dist/socket.io.js')) }
  })
}

describe('the status page on a phone', () => {
  let server: Server | undefined
  let client: Client | undefined
  let browser: Browser | undefined
  before(async () => {
    if (skip !== false) return
    server = await startServer({ cryptoChallenge: false, metrics: true })
    client = await connect(server.url, 'v2')
    const [err] = await client.request('ss-join', randomAddress(), '')
    assert.equal(err, null)
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await client?.close()
    await server?.stop()
  })

  it('shows the address and live figures, fits the screen, and loads nothing from elsewhere', { skip }, async () => {
    assert.ok(server !== undefined && browser !== undefined)
    const context = await browser.newContext(PHONE)
    try {
      const page = await context.newPage()
      const requests = recordRequests(page)
      const response = await page.goto(`${server.url}/`)
      assert.equal(response?.status(), 200)

      assert.equal(await page.locator('#addr').textContent(), `/ip4/127.0.0.1/tcp/${server.info.port}/ws/p2p-websocket-star`)
      const figure = async (id: string): Promise<string> => (await page.locator(`#${id}`).textContent() ?? '').trim()
      assert.equal(await figure('peers'), '1')
      assert.match(await figure('connections'), /^[1-9]\d*$/)
      assert.equal(await figure('relays'), '0')
      assert.match(await figure('uptime'), /^(\d+d )?(\d+h )?\d+m( \d+s)?$/)
      assert.equal(await figure('version'), VERSION)

      const [scrollWidth, innerWidth] = await page.evaluate<[number, number]>('[document.documentElement.scrollWidth, window.innerWidth]')
      assert.equal(innerWidth, PHONE.viewport.width)
      assert.ok(scrollWidth <= innerWidth, `the page is ${scrollWidth}px wide on a ${innerWidth}px screen`)
      for (const id of ['addr', 'peers', 'connections', 'relays', 'uptime', 'version']) {
        const box = await page.locator(`#${id}`).boundingBox()
        assert.ok(box !== null && box.x >= 0 && box.x + box.width <= innerWidth, `#${id} lies within the screen: ${JSON.stringify(box)}`)
      }

      mkdirSync(dirname(SCREENSHOT), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      console.log(`# screenshot: ${SCREENSHOT}`)

      assert.deepEqual(foreignRequests(requests, [server.url]), [], 'requests to other origins')
    } finally {
      await context.close()
    }
  })
})

interface Received { bytes: number, chunks: number, notArrayBuffer: number, sha256: string, end: unknown }
interface Sent { bytes: number, chunks: number }

describe('browser peers with socket.io-client 2.x', () => {
  let server: Server | undefined
  let site: Site | undefined
  let browser: Browser | undefined
  const contexts: BrowserContext[] = []
  const requests: string[][] = []
  const pageErrors: Error[] = []
  /** One peer over websocket only, one over polling only, each in its own browser context. */
  const peers: Array<{ page: Page, transport: string, address: string, connectedOver: string, joinAck: unknown[] }> = []

  before(async () => {
    if (skip !== false) return
    server = await startServer({ cryptoChallenge: false })
    site = await servePeerPage()
    browser = await launchChromium()
    for (const transport of ['websocket', 'polling']) {
      const context = await browser.newContext()
      contexts.push(context)
      const page = await context.newPage()
      requests.push(recordRequests(page))
      page.on('pageerror', (err) => { pageErrors.push(err) })
      await page.goto(site.url)
      const connectedOver = await call<string>(page, 'connect', server.url, transport)
      peers.push({ page, transport, address: randomAddress(), connectedOver, joinAck: [] })
    }
  })
  after(async () => {
    for (const context of contexts) await context.close()
    await browser?.close()
    await site?.close()
    await server?.stop()
  })

  it('connect cross-origin, one over websocket and one over polling only', { skip }, async () => {
    assert.deepEqual(peers.map((p) => p.connectedOver), ['websocket', 'polling'])
    assert.ok(server !== undefined)
    await until(() => server?.stats().connections === 2, 'the server counts both browsers')
  })

  it('join and discover each other: the first hears ws-peer, the second\'s join ack lists the first', { skip }, async () => {
    const [a, b] = peers as [typeof peers[0], typeof peers[0]]
    a.joinAck = await call<unknown[]>(a.page, 'join', a.address)
    assert.deepEqual(a.joinAck, [null, null, []])
    const aHearsB = call(a.page, 'discovers', b.address)
    b.joinAck = await call<unknown[]>(b.page, 'join', b.address)
    assert.deepEqual(b.joinAck, [null, null, [a.address]])
    await aHearsB
  })

  for (const [dialer, listener] of [[0, 1], [1, 0]] as const) {
    const over = ['websocket', 'polling']
    it(`relay 1 MiB of ArrayBuffers each way when the ${over[dialer]} peer dials the ${over[listener]} peer`, { skip }, async () => {
      const a = peers.at(dialer)
      const b = peers.at(listener)
      assert.ok(a !== undefined && b !== undefined && server !== undefined)
      const chunks = [...makeChunks(2 * CHUNKS, CHUNK_BYTES)]
      const forwardHash = sha256(chunks.slice(0, CHUNKS))
      const backHash = sha256(chunks.slice(CHUNKS))
      const dialId = randomUUID()
      const relayedBefore = server.stats().relayedBytes

      await call(b.page, 'listen', CHUNKS, CHUNKS, CHUNK_BYTES)
      const [dialed, listened] = await Promise.all([
        call<{ answer: unknown[], received: Received, sent: Sent }>(a.page, 'dial', a.address, b.address, dialId, 0, CHUNKS, CHUNK_BYTES),
        within(b.page.evaluate(async () => await (globalThis as PeerGlobal).peer.listened as { dialId: string, from: string, received: Received, sent: Sent }), 'the listener\'s streams')
      ])

      assert.deepEqual(dialed.answer, [], 'the dial is acknowledged without error')
      assert.equal(listened.dialId, dialId)
      assert.equal(listened.from, a.address)
      assert.deepEqual(dialed.sent, { bytes: MiB, chunks: CHUNKS })
      assert.deepEqual(listened.sent, { bytes: MiB, chunks: CHUNKS })
      assert.deepEqual(listened.received, { bytes: MiB, chunks: CHUNKS, notArrayBuffer: 0, sha256: forwardHash, end: true }, 'dialer → listener')
      assert.deepEqual(dialed.received, { bytes: MiB, chunks: CHUNKS, notArrayBuffer: 0, sha256: backHash, end: true }, 'listener → dialer')

      assert.equal(server.stats().relayedBytes - relayedBefore, 2 * MiB)
      await until(() => server?.stats().relayedStreams === 0, 'the relayed streams are freed')
      // polling only means no upgrade, even after a megabyte each way
      assert.deepEqual(await Promise.all(peers.map(async (p) => await call<string>(p.page, 'transport'))), ['websocket', 'polling'])
    })
  }

  it('load everything from the page\'s site and the server, nothing from elsewhere, without script errors', { skip }, () => {
    assert.ok(server !== undefined && site !== undefined)
    for (const urls of requests) {
      const reachedServer = urls.some((url) => foreignRequests([url], [server?.url ?? '']).length === 0 && new URL(url).pathname === '/socket.io/')
      assert.ok(reachedServer, `the page reached the server: ${JSON.stringify(urls)}`)
      assert.deepEqual(foreignRequests(urls, [site.url, server.url]), [], 'requests to other origins')
    }
    assert.deepEqual(pageErrors, [])
  })
})
