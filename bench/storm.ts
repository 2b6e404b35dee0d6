/**
 * Scenario (b): the discovery storm. With N peers joined, every address is
 * announced to every other peer once per refresh interval, a demand of
 * N × (N − 1) / interval `ws-peer` messages per second; this measures how many
 * the peers actually receive, and what it costs the server.
 */
import { performance } from 'node:perf_hooks'
import type { Fleet } from './fleet.js'
import { progress } from './progress.js'
import type { Target } from './targets.js'

/** The servers' default refresh interval; the storm runs with it, as issue 5 asks. */
export const DEFAULT_REFRESH_MS = 10_000
const PROGRESS_EVERY_MS = 5_000

export interface StormResult {
  n: number
  /** Connections still open when the storm began. */
  peersAtStart: number
  seconds: number
  /** Epoch ms of the window, to pick the control-plane probes sent in it. */
  fromMs: number
  toMs: number
  delivered: number
  deliveredPerSecond: number
  /** N × (N − 1) / refresh interval, with N the peers asked to join. */
  demandPerSecond: number
  deliveredPercent: number
  /** Server CPU: cores busy on average (CPU seconds / wall seconds), from procfs. */
  serverCores: number
  /** This process's CPU (the generator and the prober thread), cores busy on average. */
  generatorCores: number
  /** Connections the server dropped during the window. */
  dropped: number
}

export async function discoveryStorm (target: Target, fleet: Fleet, n: number, seconds: number, label: string): Promise<StormResult> {
  const peersAtStart = fleet.connected
  const dropped0 = fleet.dropped
  const messages0 = fleet.peerMessages
  const cpu0 = target.cpuSeconds()
  const own0 = process.cpuUsage()
  const t0 = performance.now()
  const fromMs = performance.timeOrigin + t0
  let lastMessages = messages0
  let lastT = t0
  await new Promise<void>((resolve, reject) => {
    const ticker = setInterval(() => {
      if (!target.alive()) {
        clearInterval(ticker)
        clearTimeout(end)
        reject(new Error('server died during the storm'))
        return
      }
      const now = performance.now()
      const messages = fleet.peerMessages
      progress(`  ${label}: ${((messages - lastMessages) / ((now - lastT) / 1000)).toFixed(0)} ws-peer/s delivered, ${fleet.connected} connected, ${((now - t0) / 1000).toFixed(0)} of ${seconds} s`)
      lastMessages = messages
      lastT = now
    }, PROGRESS_EVERY_MS)
    const end = setTimeout(() => { clearInterval(ticker); resolve() }, seconds * 1000)
  })
  const t1 = performance.now()
  const wall = (t1 - t0) / 1000
  const own = process.cpuUsage(own0)
  const delivered = fleet.peerMessages - messages0
  const demandPerSecond = n * (n - 1) / (DEFAULT_REFRESH_MS / 1000)
  return {
    n,
    peersAtStart,
    seconds: wall,
    fromMs,
    toMs: performance.timeOrigin + t1,
    delivered,
    deliveredPerSecond: delivered / wall,
    demandPerSecond,
    deliveredPercent: 100 * delivered / wall / demandPerSecond,
    serverCores: (target.cpuSeconds() - cpu0) / wall,
    generatorCores: (own.user + own.system) / 1e6 / wall,
    dropped: fleet.dropped - dropped0
  }
}
