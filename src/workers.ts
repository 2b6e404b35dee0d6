/**
 * `--workers <n>`: several processes on one machine. The primary listens and
 * hands each connection to a worker (@socket.io/sticky: every request of a
 * polling session reaches the worker that holds it); the workers are nodes of
 * one cluster through Redis, so peers on different workers see and dial each
 * other. A worker that dies is started again; SIGTERM drains them all.
 */
import cluster, { type Worker } from 'node:cluster'
import { createServer } from 'node:http'
import { Socket, type AddressInfo } from 'node:net'
import { setupMaster, setupWorker } from '@socket.io/sticky'
import { AggregatorRegistry } from 'prom-client'
import { CLI_DEFAULTS, start, type Options, type RendezvousServer } from './index.js'
import { resolveConfig } from './options.js'

/** A worker that dies sooner than this after it was started is crashing: its restarts back off. */
const CRASH_WINDOW_MS = 10_000
/** Wait before restarting a crashing worker; it doubles with each quick crash, up to `RESTART_MAX_DELAY_MS`. */
const RESTART_FIRST_DELAY_MS = 1000
const RESTART_MAX_DELAY_MS = 30_000
/**
 * How long a worker's `/metrics` waits for the primary's sum over all
 * workers; prom-client gives up on a worker that does not answer after 5 s,
 * so the primary's error normally comes first.
 */
const CLUSTER_SCRAPE_TIMEOUT_MS = 7000
/**
 * sticky's least-connection picks the worker with the lowest `clientsCount`;
 * a worker that is still starting counts this many, so that no connection is
 * handed to it before it can take one.
 */
const STARTING_BIAS = 1e9

/** The port the primary listens on, for the workers: the real one when 0 was asked for. */
const PORT_ENV = 'RENDEZVOUS_WORKER_PORT'

/** Worker → primary: serving. */
const READY = 'rendezvous:ready'
/** Worker → primary: draining, hand me no more connections (its clients are coming back for another worker). */
const DRAINING = 'rendezvous:draining'
/** Worker → primary: the metrics of all workers, please; and the answer back. */
const METRICS = 'rendezvous:metrics'

interface MetricsReply { type: typeof METRICS, id: number, body?: string, contentType?: string, error?: string }

function isMessage (message: unknown, type: string): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type
}

/** IPC to a process that may be gone: the caller has nothing to do about a failed send. */
const ignore = (): void => {}

export interface Workers {
  /** Where the primary listens (the real port when 0 was asked for). */
  info: { port: number, host: string, uri: string }
  /**
   * Stops restarting, sends SIGTERM to every worker (each drains as the
   * single process does), waits for them and releases the port; resolves
   * with the exit code: 0, or 1 if a worker failed to stop cleanly.
   */
  shutdown: () => Promise<number>
  /** Kills every worker at once (a second signal). */
  kill: () => void
}

interface Slot {
  worker?: Worker
  startedAt: number
  ready: boolean
  /** The wait before the next restart, if this worker crashes again soon. */
  backoffMS: number
  restart?: NodeJS.Timeout
  /** The pid of the worker this one replaces, for the log. */
  replaces?: number
}

const counted = (worker: Worker): Worker & { clientsCount: number } => worker as Worker & { clientsCount: number }

/**
 * sticky reads a request's first bytes, then sends the connection to a
 * worker. Node goes on reading it until the worker has acknowledged it and
 * throws away what it reads meanwhile: a client quick to send its next
 * message (a websocket's Socket.IO connect) would lose it and hang. So the
 * primary stops reading a connection as it sends it; the worker reads the rest.
 */
function handOverUnread (worker: Worker): void {
  const send = worker.send.bind(worker) as (...args: unknown[]) => boolean
  worker.send = ((...args: unknown[]) => {
    const connection = args[1]
    if (connection instanceof Socket) (connection as Socket & { _handle?: { readStop: () => number } | null })._handle?.readStop()
    return send(...args)
  }) as Worker['send']
}

/**
 * The primary: listens on the configured port and host, forks `count` workers
 * running this same program, and resolves once every one of them serves.
 * Rejects as `start()` does for a bad option or a port it cannot listen on,
 * and if a worker exits before it serves.
 */
export async function runWorkers (count: number, options: Options): Promise<Workers> {
  const config = resolveConfig(options, CLI_DEFAULTS)
  const slots: Slot[] = []
  let stopping = false
  let started = false
  const aggregator = new AggregatorRegistry()

  const server = createServer()
  server.on('connection', (socket) => {
    // nobody could serve it: sticky would hand it to a worker still starting
    if (!slots.some((slot) => slot.ready)) socket.destroy()
  })
  setupMaster(server, { loadBalancingMethod: 'least-connection' })
  // sticky sends each request's first bytes along with its connection: as a Buffer, not as JSON
  cluster.setupPrimary({ serialization: 'advanced' })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port

  let startup: { resolve: () => void, reject: (err: Error) => void } | undefined
  const allStarted = new Promise<void>((resolve, reject) => { startup = { resolve, reject } })
  let allExited: (() => void) | undefined
  let failedToStop = false

  function fork (slot: Slot): void {
    const worker = cluster.fork({ [PORT_ENV]: String(port) })
    handOverUnread(worker)
    Object.assign(slot, { worker, startedAt: Date.now(), ready: false })
    counted(worker).clientsCount = STARTING_BIAS
    // a send to a worker that just died fails here rather than throwing in the primary
    worker.on('error', (err: Error) => { process.stderr.write(`rendezvous: worker ${worker.process.pid ?? '?'}: ${err.message}\n`) })
    worker.on('message', (message: unknown) => {
      if (isMessage(message, READY)) ready(slot, worker)
      else if (isMessage(message, DRAINING)) draining(slot, worker)
      else if (isMessage(message, METRICS)) scrapeFor(worker, (message as MetricsReply).id)
    })
    worker.once('exit', (code: number | null, signal: string | null) => { exited(slot, worker, code, signal) })
  }

  function ready (slot: Slot, worker: Worker): void {
    slot.ready = true
    counted(worker).clientsCount -= STARTING_BIAS
    if (slot.replaces !== undefined) {
      process.stderr.write(`rendezvous: worker ${worker.process.pid ?? '?'} serves, in place of worker ${slot.replaces}\n`)
      slot.replaces = undefined
    }
    if (!started && slots.every((s) => s.ready)) {
      started = true
      startup?.resolve()
    }
  }

  function draining (slot: Slot, worker: Worker): void {
    if (slot.worker !== worker || !slot.ready) return
    slot.ready = false
    counted(worker).clientsCount += STARTING_BIAS
  }

  function exited (slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    slot.ready = false
    const pid = worker.process.pid ?? 0
    const how = signal !== null ? `signal ${signal}` : `code ${String(code)}`
    if (stopping) {
      // killed by the SIGTERM itself: it had not got as far as handling it, and had nothing to drain
      if (code !== 0 && signal !== 'SIGTERM') failedToStop = true
      if (slots.every((s) => s.worker === undefined)) allExited?.()
      return
    }
    if (!started) {
      startup?.reject(new Error(`worker ${pid} exited before it served (${how})`))
      return
    }
    let delayMS = 0
    if (Date.now() - slot.startedAt < CRASH_WINDOW_MS) {
      delayMS = slot.backoffMS
      slot.backoffMS = Math.min(2 * slot.backoffMS, RESTART_MAX_DELAY_MS)
    } else slot.backoffMS = RESTART_FIRST_DELAY_MS
    process.stderr.write(`rendezvous: worker ${pid} exited (${how}), restarting it${delayMS > 0 ? ` in ${delayMS / 1000} s` : ''}\n`)
    slot.replaces = pid
    slot.restart = setTimeout(() => {
      slot.restart = undefined
      fork(slot)
    }, delayMS)
  }

  function scrapeFor (worker: Worker, id: number): void {
    const reply = (fields: Partial<MetricsReply>): void => { worker.send({ type: METRICS, id, ...fields }, ignore) }
    aggregator.clusterMetrics().then(
      (body) => { reply({ body, contentType: aggregator.contentType }) },
      (err: unknown) => { reply({ error: err instanceof Error ? err.message : String(err) }) }
    )
  }

  const kill = (): void => {
    for (const slot of slots) slot.worker?.process.kill('SIGKILL')
  }

  const release = (): void => {
    // not waiting for 'close': net.Server asks the workers a connection was
    // handed to whether they closed it, and a worker that has exited never answers
    server.close()
    // connections whose requests sticky relays for a worker
    server.closeAllConnections()
  }

  for (let i = 0; i < count; i++) {
    const slot: Slot = { startedAt: 0, ready: false, backoffMS: RESTART_FIRST_DELAY_MS }
    slots.push(slot)
    fork(slot)
  }
  try {
    await allStarted
  } catch (err) {
    stopping = true
    kill()
    release()
    throw err
  }

  const host = config.host
  return {
    info: { port, host, uri: `http://${host.includes(':') ? `[${host}]` : host}:${port}` },
    shutdown: async () => {
      stopping = true
      const exitedAll = new Promise<void>((resolve) => { allExited = resolve })
      for (const slot of slots) {
        clearTimeout(slot.restart)
        slot.worker?.process.kill('SIGTERM')
      }
      if (slots.some((slot) => slot.worker !== undefined)) await exitedAll
      release()
      return failedToStop ? 1 : 0
    },
    kill
  }
}

/** The primary's sum over all workers, for this worker's `/metrics`. */
function clusterScraper (): () => Promise<{ contentType: string, body: string }> {
  const pending = new Map<number, (reply: MetricsReply) => void>()
  let nextId = 0
  process.on('message', (message: unknown) => {
    if (isMessage(message, METRICS)) pending.get((message as MetricsReply).id)?.(message as MetricsReply)
  })
  return async () => {
    const id = nextId++
    try {
      const reply = await new Promise<MetricsReply>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`the primary did not send the metrics of all workers within ${CLUSTER_SCRAPE_TIMEOUT_MS} ms`)) }, CLUSTER_SCRAPE_TIMEOUT_MS)
        pending.set(id, (reply) => {
          clearTimeout(timer)
          resolve(reply)
        })
        process.send?.({ type: METRICS, id }, (err: Error | null) => {
          if (err === null) return
          clearTimeout(timer)
          reject(err)
        })
      })
      if (reply.body === undefined || reply.contentType === undefined) throw new Error(`metrics of all workers: ${reply.error ?? 'no answer'}`)
      return { contentType: reply.contentType, body: reply.body }
    } finally {
      pending.delete(id)
    }
  }
}

/**
 * A worker: the server of `start()`, handed its connections by the primary.
 * SIGTERM drains it and exits 0; SIGINT is left to the primary (a Ctrl-C
 * reaches every process of the terminal's group, and the primary decides);
 * if the primary goes away, the worker drains and exits too.
 */
export async function runWorker (options: Options): Promise<RendezvousServer> {
  // constructed for its side effect: the listener that answers the primary's requests for this worker's metrics
  // eslint-disable-next-line no-new
  new AggregatorRegistry()
  let server: RendezvousServer | undefined
  let stopping = false
  const drain = (): void => {
    process.send?.({ type: DRAINING }, ignore)
    server?.shutdown().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`rendezvous: worker ${process.pid}: error while stopping: ${String(err)}\n`)
      process.exit(1)
    })
  }
  const stop = (): void => {
    if (stopping) return
    stopping = true
    drain()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', ignore)
  process.on('disconnect', stop)

  server = await start({ ...options, port: Number(process.env[PORT_ENV]) }, CLI_DEFAULTS, {
    attach: (io) => { setupWorker(io) },
    registry: (registry) => { AggregatorRegistry.setRegistries([registry]) },
    scrape: clusterScraper()
  })
  if (stopping) drain()
  else process.send?.({ type: READY }, ignore)
  return server
}
