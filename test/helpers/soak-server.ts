/**
 * The soak's servers, in a child process of their own (see soak.ts for why).
 * Started by `node --expose-gc` with the servers' options as JSON in argv[2];
 * answers requests from the parent over IPC:
 *
 *   { id, command: 'report' }  the servers' tables, the heap, RSS and the live handles and timers
 *   { id, command: 'gc' }      the same, after full garbage collections
 *   { id, command: 'snapshot', path } writes a heap snapshot there, for finding what a leak holds
 *   { id, command: 'stop' }    stops the servers, answers, and exits
 */
import { createHook } from 'node:async_hooks'
import { writeHeapSnapshot } from 'node:v8'
import { Socket } from 'socket.io'
import { start, type Options, type RendezvousServer } from '../../src/index.js'
import type { ServerStats } from '../../src/index.js'

export type SoakCommand = 'report' | 'gc' | 'snapshot' | 'stop'

export interface SoakRequest {
  id: number
  command: SoakCommand
  /** Where 'snapshot' writes. */
  path?: string
}

export interface SoakReport {
  stats: ServerStats[]
  heapUsedBytes: number
  rssBytes: number
  /** Peak resident set size of the process since it started. */
  maxRssBytes: number
  /** Live handles and requests by type, as `process.getActiveResourcesInfo()` names them ('TCPSocketWrap', 'Immediate', ...), timers aside. */
  resources: Record<string, number>
  /**
   * Socket.IO sockets made and not yet garbage-collected. A departed peer's
   * socket that something still references is the commonest leak, and the
   * largest: through it, its Engine.IO connection, transport and buffers.
   */
  liveSockets: number
  /** Timers keeping the event loop alive, but for Engine.IO's polling close timers. */
  timers: number
  /** Engine.IO's polling close timers: bounded, see ENGINE_POLLING_CLOSE. */
  pollingCloseTimers: number
  /** Where the first few of `timers` were made, for finding a leaked one. */
  timerStacks: string[]
}

export type SoakMessage =
  | { ready: true, urls: string[] }
  | { id: number, report: SoakReport }
  | { id: number, error: string }

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('soak-server must run under node --expose-gc')
if (process.send === undefined) throw new Error('soak-server must be started with an IPC channel')
const send = process.send.bind(process)

/**
 * Counts Socket.IO sockets as they are made (the server calls `on` on each
 * one as it connects) and as they are collected.
 */
let socketsMade = 0
let socketsCollected = 0
const collected = new FinalizationRegistry<undefined>(() => { socketsCollected++ })
const counted = new WeakSet()
const proto = Socket.prototype as unknown as { on: (this: object, ...args: unknown[]) => unknown }
const on = proto.on
proto.on = function (this: object, ...args: unknown[]) {
  if (!counted.has(this)) {
    counted.add(this)
    socketsMade++
    collected.register(this, undefined)
  }
  return on.apply(this, args)
}

/**
 * Every timer, with the stack that made it. When the server closes a polling
 * transport with no poll request open (after a heartbeat timeout, say),
 * Engine.IO waits for the client's next poll to tell it so, for 30 s (its
 * `closeTimeout`, not an option), with a timer running: bounded, so it is
 * counted apart rather than waited for.
 */
const ENGINE_POLLING_CLOSE = /at Polling\.doClose \(.*engine\.io/
interface Timer { stack: string, resource: { hasRef?: () => boolean } }
const timers = new Map<number, Timer>()
Error.stackTraceLimit = 20
createHook({
  init (asyncId, type, _trigger, resource) {
    if (type === 'Timeout') timers.set(asyncId, { stack: new Error('timer made').stack ?? '', resource })
  },
  destroy (asyncId) { timers.delete(asyncId) }
}).enable()

/** Timers that keep the event loop alive (unref'd ones do not: the server's sweepers are). */
function liveTimers (): { others: string[], pollingClose: number } {
  const others: string[] = []
  let pollingClose = 0
  for (const t of timers.values()) {
    if (t.resource.hasRef?.() === false) continue
    if (ENGINE_POLLING_CLOSE.test(t.stack)) pollingClose++
    else others.push(t.stack)
  }
  return { others, pollingClose }
}

function report (servers: RendezvousServer[]): SoakReport {
  const resources: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) if (type !== 'Timeout') resources[type] = (resources[type] ?? 0) + 1
  const memory = process.memoryUsage()
  const live = liveTimers()
  return {
    stats: servers.map((s) => s.stats()),
    heapUsedBytes: memory.heapUsed,
    rssBytes: memory.rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    resources,
    liveSockets: socketsMade - socketsCollected,
    timers: live.others.length,
    pollingCloseTimers: live.pollingClose,
    timerStacks: live.others.slice(0, 5)
  }
}

/** Full collections until the heap stops shrinking, letting weak callbacks and finalizers run in between. */
async function collect (): Promise<void> {
  let last = Infinity
  for (let i = 0; i < 10; i++) {
    ;(gc as () => void)()
    await new Promise((resolve) => setImmediate(resolve))
    const now = process.memoryUsage().heapUsed
    if (i >= 2 && now >= last) return
    last = now
  }
}

const options = JSON.parse(process.argv[2] ?? '[]') as Options[]
const servers: RendezvousServer[] = []
for (const o of options) servers.push(await start({ port: 0, host: '127.0.0.1', ...o }))

process.on('message', (message: SoakRequest) => {
  void (async () => {
    try {
      switch (message.command) {
        case 'report':
          send({ id: message.id, report: report(servers) })
          return
        case 'gc':
          await collect()
          send({ id: message.id, report: report(servers) })
          return
        case 'snapshot':
          await collect()
          writeHeapSnapshot(message.path)
          send({ id: message.id, report: report(servers) })
          return
        case 'stop':
          await Promise.all(servers.map(async (s) => { await s.stop() }))
          // Engine.IO's polling close timers (see above) may run on for 30 s: no need to wait for them
          send({ id: message.id, report: report(servers) }, () => { process.exit(0) })
      }
    } catch (err) {
      send({ id: message.id, error: err instanceof Error ? err.stack ?? err.message : String(err) })
    }
  })()
})

send({ ready: true, urls: servers.map((s) => `http://127.0.0.1:${s.info.port}`) } satisfies SoakMessage)
