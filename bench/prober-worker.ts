/**
 * The control-plane prober, in a worker thread with its own event loop so the
 * load generator's work does not delay its timing: a real socket.io-client
 * 2.x peer, joined, that emits `ss-dial` from its own address to an absent
 * one every PROBE_EVERY_MS and times the `'Peer not found'` answer.
 */
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { parentPort, workerData } from 'node:worker_threads'
import ioV2 from 'socket.io-client-v2'
import { randomAddress } from '../test/helpers/keys.js'
import type { Probe, ProberMessage } from './prober.js'

/** How often a probe is sent, as issue 5 asks. */
const PROBE_EVERY_MS = 100
const CONNECT_TIMEOUT_MS = 20_000

const { url } = workerData as { url: string }
const port = parentPort
if (port === null) throw new Error('prober-worker runs as a worker thread')
const post = (message: ProberMessage): void => { port.postMessage(message) }

const probes: Probe[] = []
const address = randomAddress()
const absent = randomAddress()
let timer: NodeJS.Timeout | undefined
let lost: string | undefined

const socket = ioV2(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: CONNECT_TIMEOUT_MS })
socket.on('connect_error', (err: unknown) => { post({ type: 'failed', error: `prober could not connect: ${String(err)}` }) })
socket.on('disconnect', (reason: string) => { lost = `prober disconnected: ${reason}` })
socket.on('connect', () => {
  socket.emit('ss-join', address, '', (err: unknown) => {
    if (err !== null) return post({ type: 'failed', error: `prober could not join: ${String(err)}` })
    post({ type: 'ready' })
    timer = setInterval(probe, PROBE_EVERY_MS)
  })
})

function probe (): void {
  const entry: Probe = { sentAt: performance.timeOrigin + performance.now(), rttMs: undefined, answer: undefined }
  const started = performance.now()
  probes.push(entry)
  socket.emit('ss-dial', address, absent, randomUUID(), (err: unknown) => {
    entry.rttMs = performance.now() - started
    entry.answer = String(err)
  })
}

port.on('message', (message: { type: 'stop' }) => {
  if (message.type !== 'stop') return
  if (timer !== undefined) clearInterval(timer)
  post({ type: 'done', probes, lost, stoppedAt: performance.timeOrigin + performance.now() })
  socket.disconnect()
  port.close()
})
