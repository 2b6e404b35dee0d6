/**
 * A real WebRTC connection between two browsers, signalled by this server:
 * two headless Chromium pages load a bundle of the real `@libp2p/webrtc-star`
 * client (7.0.0, built here with esbuild), listen through the server, find
 * each other, and one dials the other over a WebRTC data channel set up by
 * the offers and answers the server relays; 1 MiB goes there and back
 * byte-exact. Skips when Chromium is not installed.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import type { Browser, Page } from 'playwright-core'
import { NO_CHROMIUM, callPage, foreignRequests, launchChromium, recordRequests, serveSite, type Site } from './helpers/browser.js'
import { sampleOr, scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'

type Server = Awaited<ReturnType<typeof startServer>>

const MiB = 1024 * 1024
/** Read from the source tree: the build compiles only TypeScript into dist/. */
const ENTRY = fileURLToPath(new URL('../../test/fixtures/webrtc-star-peer.mjs', import.meta.url))
const PAGE = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>webrtc-star browser peer</title>' +
  '<script type="module" src="/webrtc-star.js"></script></head><body></body></html>'
const skip = NO_CHROMIUM

/** Byte i of a stream, as the page's patternBytes() makes it. */
function expectedBytes (length: number): Buffer {
  const bytes = Buffer.alloc(length)
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + (i >>> 8) + (i >>> 16)) & 0xff
  return bytes
}

/** The page's client: the real package and its dependencies in one browser module. */
async function bundle (): Promise<Uint8Array> {
  const result = await build({ entryPoints: [ENTRY], bundle: true, format: 'esm', platform: 'browser', target: 'chrome110', write: false, logLevel: 'silent' })
  assert.equal(result.outputFiles.length, 1, 'esbuild made one bundle')
  return result.outputFiles[0].contents
}

/** Calls `window.star[method](...args)` in `page` and resolves with its result. */
async function call<T> (page: Page, method: string, ...args: unknown[]): Promise<T> {
  return await callPage<T>(page, 'star', method, ...args)
}

describe('webrtc-star between two Chromium pages', () => {
  let server: Server | undefined
  let site: Site | undefined
  let browser: Browser | undefined
  const pages: Page[] = []
  const requests: string[][] = []
  const errors: string[] = []
  const addresses: string[] = []

  before(async () => {
    if (skip !== false) return
    server = await startServer({ cryptoChallenge: false, metrics: true, refreshPeerListIntervalMS: 500 })
    const script = await bundle()
    // the pages' own site on another port, so that their connections to the server are cross-origin
    site = await serveSite({
      '/': { type: 'text/html; charset=utf-8', body: () => PAGE },
      '/webrtc-star.js': { type: 'text/javascript; charset=utf-8', body: () => script }
    })
    // host candidates as addresses, not mDNS names nothing here resolves
    browser = await launchChromium(['--disable-features=WebRtcHideLocalIpsWithMdns'])
    for (let i = 0; i < 2; i++) {
      const page = await browser.newPage()
      requests.push(recordRequests(page))
      page.on('pageerror', (error) => { errors.push(error.message) })
      await page.goto(site.url)
      await page.waitForFunction(() => 'star' in globalThis)
      pages.push(page)
    }
  })
  after(async () => {
    await browser?.close()
    await site?.close()
    await server?.stop()
  })

  it('both listen through the server and discover each other', { skip }, async () => {
    assert.ok(server !== undefined && pages.length === 2)
    const [first, second] = pages
    for (const page of pages) addresses.push(await call<string>(page, 'start', server.info.port))
    const [a, b] = addresses
    // the second hears of the first when it joins, the first of the second on the next refresh
    await call(second, 'discovers', a)
    await call(first, 'discovers', b)
    assert.equal(Object.keys(server.peers()).length, 2)
  })

  it('open a WebRTC data channel through the relayed signalling and echo 1 MiB byte-exact', { skip }, async () => {
    assert.ok(server !== undefined && addresses.length === 2, 'the pages listen')
    const [, second] = pages
    const [a] = addresses
    const relayedBefore = sampleOr(await scrape(server.url), 'rendezvous_webrtc_star_signals_total', { result: 'relayed' }, 0)
    const echoed = await call<{ sent: string, received: string, length: number }>(second, 'roundTrip', a, MiB, 16 * 1024)
    assert.equal(echoed.length, MiB)
    assert.equal(echoed.sent, createHash('sha256').update(expectedBytes(MiB)).digest('hex'), 'the page sent the pattern')
    assert.equal(echoed.received, echoed.sent, 'what came back is what went')
    // an offer one way and an answer back at the least, each relayed by the server
    const relayed = sampleOr(await scrape(server.url), 'rendezvous_webrtc_star_signals_total', { result: 'relayed' }, 0) - relayedBefore
    assert.ok(relayed >= 2, `the server relayed ${relayed} signals`)
  })

  it('load nothing from elsewhere, without script errors', { skip }, () => {
    assert.ok(site !== undefined && server !== undefined)
    for (const urls of requests) assert.deepEqual(foreignRequests(urls, [site.url, server.url]), [])
    assert.deepEqual(errors, [])
  })
})

