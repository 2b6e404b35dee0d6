/**
 * Control-plane round trip during a scenario: starts the prober worker (see
 * prober-worker.ts), and on stop hands back every probe with its timing.
 */
import { Worker } from 'node:worker_threads'
import type { Target } from './targets.js'

export interface Probe {
  /** Epoch milliseconds (sub-millisecond precision) when the probe was sent. */
  sentAt: number
  /** Round trip in ms; undefined if no answer came before the prober stopped. */
  rttMs: number | undefined
  /** The ack's error argument as text, `'Peer not found'` when all is well. */
  answer: string | undefined
}

/** A reconnecting prober's time without a joined connection. */
export interface Outage {
  /** Epoch ms of the disconnect. */
  at: number
  /** socket.io-client's reason, e.g. `'transport close'`. */
  reason: string
  /** Epoch ms when it had joined again, if it did. */
  rejoinedAt: number | undefined
  /** Joins the server refused on the way. */
  rejoinErrors: number
}

export type ProberMessage =
  | { type: 'ready' }
  | { type: 'failed', error: string }
  | { type: 'done', probes: Probe[], lost: string | undefined, outages: Outage[], stoppedAt: number }

export interface ProbeReport {
  probes: Probe[]
  /** Why the prober's connection ended early, if it did. */
  lost: string | undefined
  /** With `reconnect`: each disconnect and when it had joined again. */
  outages: Outage[]
  stoppedAt: number
}

export interface Prober {
  stop: () => Promise<ProbeReport>
}

/**
 * Resolves once the prober has joined and started probing. With `reconnect`
 * it reconnects and joins again after the server closed its connection.
 */
export async function startProber (target: Target, reconnect = false): Promise<Prober> {
  const worker = new Worker(new URL('./prober-worker.js', import.meta.url), { workerData: { url: target.url, reconnect } })
  const messages: ProberMessage[] = []
  let notify: (() => void) | undefined
  worker.on('message', (message: ProberMessage) => { messages.push(message); notify?.() })
  worker.on('error', (err) => { messages.push({ type: 'failed', error: `prober crashed: ${err.message}` }); notify?.() })
  const next = async (type: ProberMessage['type']): Promise<ProberMessage> => {
    for (;;) {
      const found = messages.find((m) => m.type === type || m.type === 'failed')
      if (found !== undefined) return found
      await new Promise<void>((resolve) => { notify = resolve })
    }
  }
  const ready = await next('ready')
  if (ready.type === 'failed') {
    await worker.terminate()
    throw new Error(ready.error)
  }
  return {
    stop: async () => {
      worker.postMessage({ type: 'stop' })
      const guard = setTimeout(() => { void worker.terminate() }, 10_000)
      const done = await Promise.race([next('done'), new Promise<ProberMessage>((resolve) => { worker.once('exit', () => { resolve({ type: 'failed', error: 'prober exited without its report' }) }) })])
      clearTimeout(guard)
      await worker.terminate()
      if (done.type !== 'done') throw new Error(done.type === 'failed' ? done.error : 'prober gave no report')
      return { probes: done.probes, lost: done.lost, outages: done.outages, stoppedAt: done.stoppedAt }
    }
  }
}
