/**
 * A worker of `--workers`: the server of `start()`, handed its connections by
 * the primary. SIGTERM drains it and exits 0; SIGINT is left to the primary
 * (a Ctrl-C reaches every process of the terminal's group, and the primary
 * decides); if the primary goes away, the worker drains and exits too.
 */
import { setupWorker } from '@socket.io/sticky'
import { AggregatorRegistry } from 'prom-client'
import { WORKER_SCRAPE_TIMEOUT_MS } from '../constants.js'
import { CLI_DEFAULTS, start, type Options, type RendezvousServer } from '../index.js'
import { parsePrimaryMessage, type PrimaryMessage, type WorkerMessage } from './ipc.js'
import { PORT_ENV, ignore } from './primary.js'

function tell (message: WorkerMessage, callback: (err: Error | null) => void = ignore): void {
  process.send?.(message, callback)
}

/** The primary's sum over all workers, for this worker's `/metrics`. */
function clusterScraper (): () => Promise<{ contentType: string, body: string }> {
  const pending = new Map<number, (reply: PrimaryMessage) => void>()
  let nextId = 0
  process.on('message', (raw: unknown) => {
    const message = parsePrimaryMessage(raw)
    if (message !== undefined) pending.get(message.id)?.(message)
  })
  return async () => {
    const id = nextId++
    try {
      const reply = await new Promise<PrimaryMessage>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`the primary did not send the metrics of all workers within ${WORKER_SCRAPE_TIMEOUT_MS} ms`)) }, WORKER_SCRAPE_TIMEOUT_MS)
        pending.set(id, (reply) => {
          clearTimeout(timer)
          resolve(reply)
        })
        tell({ type: 'rendezvous:metrics', id }, (err) => {
          if (err === null) return
          clearTimeout(timer)
          reject(err)
        })
      })
      if ('error' in reply) throw new Error(`metrics of all workers: ${reply.error}`)
      return { contentType: reply.contentType, body: reply.body }
    } finally {
      pending.delete(id)
    }
  }
}

export async function runWorker (options: Options): Promise<RendezvousServer> {
  // constructed for the listener it installs, which answers the primary's requests for this worker's metrics
  new AggregatorRegistry()
  /** Set once the server runs; a signal may come before. */
  const state: { server?: RendezvousServer, stopping: boolean } = { stopping: false }
  const drain = (): void => {
    tell({ type: 'rendezvous:draining' })
    state.server?.shutdown().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`rendezvous: worker ${process.pid}: error while stopping: ${String(err)}\n`)
      process.exit(1)
    })
  }
  const stop = (): void => {
    if (state.stopping) return
    state.stopping = true
    drain()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', ignore)
  process.on('SIGHUP', () => { state.server?.reload().catch((err: unknown) => { process.stderr.write(`rendezvous: worker ${process.pid}: reload failed: ${String(err)}\n`) }) })
  process.on('disconnect', stop)

  const server = await start({ ...options, port: Number(process.env[PORT_ENV]) }, CLI_DEFAULTS, {
    attach: (io) => { setupWorker(io) },
    registry: (registry) => { AggregatorRegistry.setRegistries([registry]) },
    scrape: clusterScraper()
  })
  state.server = server
  if (state.stopping) drain()
  else tell({ type: 'rendezvous:ready' })
  return server
}
