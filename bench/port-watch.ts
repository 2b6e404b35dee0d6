/**
 * When a restarted server's port opened again, seen from a worker thread of
 * its own: the load generator's thread is too busy with the herd's retries to
 * notice a `Listening` line on time. The worker tries a TCP connection every
 * POLL_MS, without waiting for the last (a SYN the full accept queue dropped
 * hangs for a second); the port listened when the first attempt that was not
 * refused started, after one that was.
 */
import { connect } from 'node:net'
import { performance } from 'node:perf_hooks'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

const POLL_MS = 5
const MAX_IN_FLIGHT = 50

export interface PortOpening {
  /** Epoch ms the first refused attempt started, once the server had closed its port. */
  firstRefusedAt: number | undefined
  /** Epoch ms the first attempt started that was not refused after a refused one; undefined if none was yet. */
  listeningAt: number | undefined
}

/** Starts watching `port` (before the restart); `opened` resolves once it listens again, `stop` gives up. */
export function watchPort (port: number): { opened: Promise<PortOpening>, stop: () => Promise<void> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: { port } })
  const opened = new Promise<PortOpening>((resolve) => {
    worker.once('message', (opening: PortOpening) => { resolve(opening) })
    worker.once('exit', () => { resolve({ firstRefusedAt: undefined, listeningAt: undefined }) })
  })
  return { opened, stop: async () => { await worker.terminate() } }
}

if (!isMainThread && parentPort !== null && typeof (workerData as { port?: unknown } | null | undefined)?.port === 'number') {
  const { port } = workerData as { port: number }
  const post = parentPort.postMessage.bind(parentPort)
  const now = (): number => performance.timeOrigin + performance.now()
  let firstRefusedAt: number | undefined
  let inFlight = 0
  let done = false
  const attempt = (): void => {
    if (done || inFlight >= MAX_IN_FLIGHT) return
    inFlight++
    const startedAt = now()
    const socket = connect({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      inFlight--
      socket.destroy()
      // an attempt that began before the refusals reached the old server, or hung in its accept queue
      if (firstRefusedAt === undefined || startedAt <= firstRefusedAt || done) return
      done = true
      clearInterval(timer)
      post({ firstRefusedAt, listeningAt: startedAt } satisfies PortOpening)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      inFlight--
      socket.destroy()
      if (err.code === 'ECONNREFUSED') firstRefusedAt ??= startedAt
    })
  }
  const timer = setInterval(attempt, POLL_MS)
}
