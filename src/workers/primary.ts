/**
 * The primary of `--workers`: it listens and hands each connection to a
 * worker (@socket.io/sticky: every request of a polling session reaches the
 * worker that holds it), restarts a worker that dies (backing off while one
 * keeps crashing), sums the workers' metrics for `/metrics`, and drains them
 * all on SIGTERM.
 */
import nodeCluster, { type Worker } from 'node:cluster'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setupMaster } from '@socket.io/sticky'
import { AggregatorRegistry } from 'prom-client'
import { WORKER_CRASH_WINDOW_MS, WORKER_RESTART_FIRST_DELAY_MS, WORKER_RESTART_MAX_DELAY_MS } from '../constants.js'
import { closeUntaken, handOverUnread, holdBack } from '../engine.js'
import { errorMessage } from '../log.js'
import type { Config } from '../options.js'
import { parseWorkerMessage, type PrimaryMessage } from './ipc.js'

/** The port the primary listens on, for the workers: the real one when 0 was asked for. */
export const PORT_ENV = 'RENDEZVOUS_WORKER_PORT'

/** IPC to a process that may be gone: the caller has nothing to do about a failed send. */
export const ignore = (): void => {}

function say (line: string): void {
  process.stderr.write(`rendezvous: ${line}\n`)
}

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
  /** SIGHUP to every worker. */
  reload: () => void
}

/** One worker's place: the worker in it now, and its restart history. */
interface Slot {
  worker?: Worker
  startedAt: number
  ready: boolean
  /** The wait before the next restart, if this worker crashes again soon. */
  backoffMS: number
  restart?: NodeJS.Timeout
  /** The pid of the worker this one replaces, for the log. */
  replaces?: number
  /** The worker said it is draining: exiting 0 then is no crash. */
  drained: boolean
}

export class Primary {
  private readonly slots: Slot[] = []
  private readonly server = createServer()
  private readonly aggregator = new AggregatorRegistry()
  private port = 0
  private stopping = false
  private started = false
  private failedToStop = false
  private startup: { resolve: () => void, reject: (err: Error) => void } | undefined
  private allExited: (() => void) | undefined

  constructor (private readonly config: Config) {
    this.server.on('connection', (socket) => {
      // nobody could serve it: sticky would hand it to a worker still starting
      if (!this.slots.some((slot) => slot.ready)) socket.destroy()
    })
    setupMaster(this.server, { loadBalancingMethod: 'least-connection' })
    // sticky sends each request's first bytes along with its connection: as a Buffer, not as JSON
    nodeCluster.setupPrimary({ serialization: 'advanced' })
  }

  get info (): Workers['info'] {
    const { host } = this.config
    return { port: this.port, host, uri: `http://${host.includes(':') ? `[${host}]` : host}:${this.port}` }
  }

  /**
   * Listens on the configured port and host, forks `count` workers running
   * this same program, and resolves once every one of them serves. Rejects
   * for a port it cannot listen on, and if a worker exits before it serves.
   */
  async start (count: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.port = (this.server.address() as AddressInfo).port
    const allStarted = new Promise<void>((resolve, reject) => { this.startup = { resolve, reject } })
    for (let i = 0; i < count; i++) {
      const slot: Slot = { startedAt: 0, ready: false, backoffMS: WORKER_RESTART_FIRST_DELAY_MS, drained: false }
      this.slots.push(slot)
      this.fork(slot)
    }
    try {
      await allStarted
    } catch (err) {
      this.stopping = true
      this.kill()
      this.release()
      throw err
    }
  }

  async shutdown (): Promise<number> {
    this.stopping = true
    const exitedAll = new Promise<void>((resolve) => { this.allExited = resolve })
    for (const slot of this.slots) {
      clearTimeout(slot.restart)
      slot.worker?.process.kill('SIGTERM')
    }
    if (this.slots.some((slot) => slot.worker !== undefined)) await exitedAll
    this.release()
    return this.failedToStop ? 1 : 0
  }

  /** SIGHUP: every worker reloads its files. */
  reload (): void {
    for (const slot of this.slots) slot.worker?.process.kill('SIGHUP')
  }

  kill (): void {
    for (const slot of this.slots) slot.worker?.process.kill('SIGKILL')
  }

  private fork (slot: Slot): void {
    const worker = nodeCluster.fork({ [PORT_ENV]: String(this.port) })
    handOverUnread(worker)
    Object.assign(slot, { worker, startedAt: Date.now(), ready: false, drained: false })
    holdBack(worker, true)
    // a send to a worker that just died fails here rather than throwing in the primary
    worker.on('error', (err: Error) => { say(`worker ${worker.process.pid ?? '?'}: ${err.message}`) })
    worker.on('message', (raw: unknown) => {
      const message = parseWorkerMessage(raw)
      if (message?.type === 'rendezvous:ready') this.ready(slot, worker)
      else if (message?.type === 'rendezvous:draining') this.draining(slot, worker)
      else if (message?.type === 'rendezvous:metrics') this.scrapeFor(worker, message.id)
    })
    worker.once('exit', (code: number | null, signal: string | null) => {
      // else their clients wait for nothing (their own timeout: 20 s for socket.io-client)
      const closed = closeUntaken(worker)
      if (closed > 0) say(`closed ${closed} connection${closed === 1 ? '' : 's'} worker ${worker.process.pid ?? '?'} had not taken`)
      this.exited(slot, worker, code, signal)
    })
  }

  private ready (slot: Slot, worker: Worker): void {
    slot.ready = true
    holdBack(worker, false)
    if (slot.replaces !== undefined) {
      say(`worker ${worker.process.pid ?? '?'} serves, in place of worker ${slot.replaces}`)
      slot.replaces = undefined
    }
    if (!this.started && this.slots.every((s) => s.ready)) {
      this.started = true
      this.startup?.resolve()
    }
  }

  private draining (slot: Slot, worker: Worker): void {
    if (slot.worker !== worker) return
    slot.drained = true
    if (!slot.ready) return
    slot.ready = false
    holdBack(worker, true)
  }

  private exited (slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    slot.ready = false
    const pid = worker.process.pid ?? 0
    const how = signal !== null ? `signal ${signal}` : `code ${String(code)}`
    if (this.stopping) {
      // killed by the SIGTERM itself: it had not got as far as handling it, and had nothing to drain
      if (code !== 0 && signal !== 'SIGTERM') this.failedToStop = true
      if (this.slots.every((s) => s.worker === undefined)) this.allExited?.()
      return
    }
    if (!this.started) {
      this.startup?.reject(new Error(`worker ${pid} exited before it served (${how})`))
      return
    }
    const delayMS = this.restartDelay(slot, code)
    say(`worker ${pid} exited (${how}), restarting it${delayMS > 0 ? ` in ${delayMS / 1000} s` : ''}`)
    slot.replaces = pid
    slot.restart = setTimeout(() => {
      slot.restart = undefined
      this.fork(slot)
    }, delayMS)
  }

  /** A quick exit is a crash, and restarts back off, unless the worker drained (SIGTERM to it alone) and exited 0. */
  private restartDelay (slot: Slot, code: number | null): number {
    if (Date.now() - slot.startedAt >= WORKER_CRASH_WINDOW_MS) {
      slot.backoffMS = WORKER_RESTART_FIRST_DELAY_MS
      return 0
    }
    if (slot.drained && code === 0) return 0
    const delayMS = slot.backoffMS
    slot.backoffMS = Math.min(2 * slot.backoffMS, WORKER_RESTART_MAX_DELAY_MS)
    return delayMS
  }

  private scrapeFor (worker: Worker, id: number): void {
    const reply = (message: PrimaryMessage): void => { worker.send(message, ignore) }
    this.aggregator.clusterMetrics().then(
      (body) => { reply({ type: 'rendezvous:metrics', id, body, contentType: this.aggregator.contentType }) },
      (err: unknown) => { reply({ type: 'rendezvous:metrics', id, error: errorMessage(err) }) }
    )
  }

  private release (): void {
    // not waiting for 'close': net.Server asks the workers a connection was
    // handed to whether they closed it, and a worker that has exited never answers
    this.server.close()
    // connections whose requests sticky relays for a worker
    this.server.closeAllConnections()
  }
}
