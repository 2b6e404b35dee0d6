/**
 * The control-plane prober, in a worker thread with its own event loop so the
 * load generator's work does not delay its timing: a real socket.io-client
 * 2.x peer, joined, that emits `ss-dial` from its own address to an absent
 * one every PROBE_EVERY_MS and times the `'Peer not found'` answer.
 *
 * With `reconnect`, it rides out a server restart as a websocket-star
 * listener does: socket.io-client 2.x reconnects (with the herd's short
 * retry interval instead of its 1 s default) and it joins its address again.
 * Probes falling due while it is not joined wait and are sent once it is,
 * timed from when they fell due: the wait is the control plane's too.
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { parentPort, workerData } from 'node:worker_threads'
import ioV2 from 'socket.io-client-v2'
import { randomAddress } from '../test/helpers/keys.js'
import { errorText } from './error-text.js'
import type { Outage, Probe, ProberMessage } from './prober.js'

/** How often a probe is sent, as issue 5 asks. */
const PROBE_EVERY_MS = 100
const CONNECT_TIMEOUT_MS = 20_000
/** socket.io-client 2.x's backoff, set to the herd's retry interval (reconnecting-peer.ts): 100 ms ±50 %, at most 250 ms. */
const RECONNECT = { reconnectionDelay: 100, reconnectionDelayMax: 250, randomizationFactor: 0.5 }
/** A join the restarted server refused is tried again after this long. */
const REJOIN_RETRY_MS = 250

const { url, reconnect } = workerData as { url: string, reconnect: boolean }
const port = parentPort
if (port === null) throw new Error('prober-worker runs as a worker thread')
const post = (message: ProberMessage): void => { port.postMessage(message) }
const now = (): number => performance.timeOrigin + performance.now()

const probes: Probe[] = []
const outages: Outage[] = []
const address = randomAddress()
const absent = randomAddress()
let timer: NodeJS.Timeout | undefined
let lost: string | undefined
let joined = false
/** Probes that fell due while not joined, with when (performance.now()). */
let held: Array<{ entry: Probe, dueAt: number }> = []

const socket = ioV2(url, { transports: ['websocket'], forceNew: true, reconnection: reconnect, ...RECONNECT, timeout: CONNECT_TIMEOUT_MS })
socket.on('connect_error', (err: unknown) => {
  if (timer === undefined) post({ type: 'failed', error: `prober could not connect: ${String(err)}` })
})
socket.on('disconnect', (reason: string) => {
  joined = false
  if (!reconnect) lost = `prober disconnected: ${reason}`
  else outages.push({ at: now(), reason, rejoinedAt: undefined, rejoinErrors: 0 })
})
socket.on('connect', join)

function join (): void {
  socket.emit('ss-join', address, '', (err: unknown) => {
    if (err !== null) {
      if (timer === undefined) { post({ type: 'failed', error: `prober could not join: ${errorText(err)}` }); return }
      const outage = outages.at(-1)
      if (outage !== undefined) outage.rejoinErrors++
      setTimeout(() => { if (socket.connected) join() }, REJOIN_RETRY_MS)
      return
    }
    joined = true
    if (timer === undefined) {
      post({ type: 'ready' })
      timer = setInterval(probe, PROBE_EVERY_MS)
      return
    }
    const outage = outages.at(-1)
    if (outage !== undefined) outage.rejoinedAt = now()
    const waiting = held
    held = []
    for (const { entry, dueAt } of waiting) send(entry, dueAt)
  })
}

function probe (): void {
  const entry: Probe = { sentAt: now(), rttMs: undefined, answer: undefined }
  probes.push(entry)
  if (joined) send(entry, performance.now())
  else held.push({ entry, dueAt: performance.now() })
}

function send (entry: Probe, dueAt: number): void {
  socket.emit('ss-dial', address, absent, randomUUID(), (err: unknown) => {
    entry.rttMs = performance.now() - dueAt
    entry.answer = String(err)
  })
}

port.on('message', (message: { type: string }) => {
  if (message.type !== 'stop') return
  if (timer !== undefined) clearInterval(timer)
  post({ type: 'done', probes, lost, outages, stoppedAt: now() })
  socket.disconnect()
  port.close()
})
