/**
 * Headless Chromium for browser tests: Debian's build, driven by
 * playwright-core (nothing is downloaded). Without Chromium the browser tests
 * skip with `NO_CHROMIUM` as the reason; CI installs it.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type Page } from 'playwright-core'
import { findExecutable } from './executable.js'
import { within } from './wait.js'

/** The Chromium executable the tests drive, if there is one; `CHROMIUM_PATH` overrides where it is looked for. */
export const CHROMIUM_EXECUTABLE: string | undefined = findExecutable('chromium', 'CHROMIUM_PATH')

/** A skip reason for `describe(..., { skip: NO_CHROMIUM })`, or false when Chromium is there. */
export const NO_CHROMIUM: string | false = CHROMIUM_EXECUTABLE === undefined
  ? `Chromium not installed: no executable at ${process.env.CHROMIUM_PATH !== undefined ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH}` : '/usr/bin/chromium or chromium on PATH'} (apt-get install chromium)`
  : false

/**
 * Headless Chromium that stays off the network by itself: without the
 * background-networking flags it reaches for Google's services at start-up.
 * `--no-sandbox` because CI runs as root; `extraArgs` after these.
 */
export async function launchChromium (extraArgs: readonly string[] = []): Promise<Browser> {
  if (CHROMIUM_EXECUTABLE === undefined) throw new Error(String(NO_CHROMIUM))
  return await chromium.launch({
    executablePath: CHROMIUM_EXECUTABLE,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs
    ]
  })
}

/** A phone: iPhone 12-14 sized viewport, high-density, touch. */
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true } as const

/** Every URL `page` requests from now on, websockets included, in order. */
export function recordRequests (page: Page): string[] {
  const urls: string[] = []
  page.on('request', (request) => { urls.push(request.url()) })
  page.on('websocket', (ws) => { urls.push(ws.url()) })
  return urls
}

/** The requests in `urls` that went to none of `origins` (`http://127.0.0.1:1234`; `ws:` counts as `http:`). */
export function foreignRequests (urls: string[], origins: string[]): string[] {
  const allowed = new Set(origins.map((origin) => new URL(origin).origin))
  return urls.filter((url) => {
    const u = new URL(url)
    if (u.protocol === 'ws:' || u.protocol === 'wss:') u.protocol = u.protocol === 'ws:' ? 'http:' : 'https:'
    return !allowed.has(u.origin)
  })
}

/** What a page's script puts on `globalThis`: objects of methods the tests call. */
type PageObjects = typeof globalThis & Record<string, Record<string, (...args: unknown[]) => unknown>>

/** Calls `window[object][method](...args)` in `page` and resolves with its (awaited) result. */
export async function callPage<T = unknown> (page: Page, object: string, method: string, ...args: unknown[]): Promise<T> {
  const result = await within(
    page.evaluate(async ({ object, method, args }) => await (globalThis as PageObjects)[object][method](...args), { object, method, args }),
    `${object}.${method}(${args.map((a) => JSON.stringify(a)).join(', ')}) in the browser`
  )
  return result as T
}

/** A file of a test site: its content type, and its body, made at each request. */
export interface SiteFile { type: string, body: () => string | Uint8Array }

export interface Site {
  /** `http://127.0.0.1:<port>/` */
  url: string
  close: () => Promise<void>
}

/**
 * A web site of the tests' own on a free port of 127.0.0.1, serving `files`
 * by path (404 otherwise, never cached), so that pages loaded from it reach
 * the server under test cross-origin.
 */
export async function serveSite (files: Partial<Record<string, SiteFile>>): Promise<Site> {
  const site = createServer((req, res) => {
    const file = files[(req.url ?? '/').split('?', 1)[0] ?? '/']
    if (file === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
      return
    }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body())
  })
  await new Promise<void>((resolve) => { site.listen(0, '127.0.0.1', resolve) })
  return {
    url: `http://127.0.0.1:${(site.address() as AddressInfo).port}/`,
    close: async () => {
      site.closeAllConnections()
      await new Promise<void>((resolve) => { site.close(() => { resolve() }) })
    }
  }
}
