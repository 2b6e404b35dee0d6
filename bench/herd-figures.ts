/** The restart herd's figures for the table, and its target line. */
import type { Figure } from './figures.js'
import type { HerdCounts } from './herd-log.js'
import type { JoinResult } from './joins.js'
import type { TcpCounters } from './netstat.js'
import { count } from './peer-scenarios.js'
import type { PortOpening } from './port-watch.js'
import type { Outage } from './prober.js'
import type { RoundTrips } from './stats.js'
import type { Restart } from './targets.js'

const MiB = 1024 * 1024

/**
 * The target: all N peers back with no failure, the control plane's p99
 * under `p99Ms` in the window from `recoveredWithinS` to 60 s after the new
 * server listened, and RSS settled within max(`memoryRatio`, `memoryBytes`)
 * of its level before the restart.
 */
export const TARGET = { p99Ms: 100, recoveredWithinS: 30, memoryRatio: 0.10, memoryBytes: 8 * MiB }

export interface HerdResult {
  n: number
  signal: NodeJS.Signals
  join: JoinResult
  /** Peers connected and joined when the signal went. */
  atRestart: number
  droppedBeforeRestart: number
  rssBeforeBytes: number
  beforeRestart: RoundTrips
  restart: Restart
  /** Epoch ms the new server listened: when its port opened (port-watch.ts), or the `Listening` line if that came first. */
  listeningAt: number
  portOpening: PortOpening | null
  counts: HerdCounts
  /** From the new server listening until the last peer had joined again; undefined when not all did within the bound. */
  allRejoinedSeconds: number | undefined
  medianRejoinSeconds: number | undefined
  rejoinLimitSeconds: number
  /** [seconds after listening, peers joined again in the bin]. */
  rejoinHistogram: Array<[number, number]>
  connectedAtEnd: number
  windows: Record<'0-10 s' | '10-30 s' | '30-60 s', RoundTrips>
  slidingWindowSeconds: number
  /** p99 of the sliding windows starting 0, 1, 2, … s after listening. */
  slidingP99: Array<number | undefined>
  prober: { rejoinedAfterListeningMs: number | undefined, outages: Outage[], lost: string | undefined }
  peakRssBytes: number | undefined
  rssAfterBytes: number
  rssAfterSecondsFromListening: number
  serverCoresFirst10s: number | undefined
  /** The load generator's own CPU (cores) and event-loop delay, from the signal on. */
  generator: { coresWhileStopping: number, coresHerd: number, eventLoopDelayP99Ms: number, eventLoopDelayMaxMs: number }
  /** Machine-wide, from the signal until all had joined again. */
  tcpCountersDuringHerd: TcpCounters
  /** [seconds after listening, MiB], once a second. */
  rssTraceMiB: Array<[number, number]>
}

/** The first second after listening from which every sliding window's p99 is under the target; undefined if none. */
export function recoveredAfterSeconds (sliding: ReadonlyArray<number | undefined>, p99Ms = TARGET.p99Ms): number | undefined {
  let from: number | undefined
  for (let t = sliding.length - 1; t >= 0; t--) {
    const p99 = sliding[t]
    if (p99 === undefined || p99 >= p99Ms) break
    from = t
  }
  return from
}

export function herdFigures (r: HerdResult): Figure[] {
  const group = `restart herd, ${count(r.n)} peers reconnect at once`
  const partial = r.atRestart < r.n ? { note: `${count(r.atRestart)} of ${count(r.n)}` } : {}
  const recovered = recoveredAfterSeconds(r.slidingP99)
  const late = r.windows['30-60 s'].p99Ms
  const tolerance = Math.max(TARGET.memoryRatio * r.rssBeforeBytes, TARGET.memoryBytes)
  const grewBy = r.rssAfterBytes - r.rssBeforeBytes
  const missed = [
    ...(r.atRestart < r.n || r.allRejoinedSeconds === undefined ? ['not all back'] : []),
    ...(r.counts.failures > 0 ? ['failures'] : []),
    ...(late === undefined || late >= TARGET.p99Ms ? ['p99'] : []),
    ...(grewBy > tolerance ? ['memory'] : [])
  ]
  const rtt = (label: string, w: RoundTrips): Figure => ({ group, label, unit: 'ms', better: 'lower', value: w.p99Ms, ...(w.sent === 0 ? { error: 'no probe sent' } : {}) })
  return [
    { group, label: 'peers joined before the restart', unit: 'peers', better: 'higher', value: r.atRestart },
    { group, label: 'RSS before the restart, 30 s after the joins', unit: 'MiB', better: 'lower', value: r.rssBeforeBytes / MiB, ...partial },
    rtt('control-plane p99 before the restart', r.beforeRestart),
    { group, label: 'stop: signal to exit (SIGTERM; old: SIGINT)', unit: 'ms', better: 'lower', value: r.restart.exitedAt - r.restart.signalledAt },
    { group, label: 'exit to the new process listening', unit: 'ms', better: 'lower', value: r.listeningAt - r.restart.exitedAt },
    {
      group,
      label: 'all joined again, after listening',
      unit: 's',
      better: 'lower',
      value: r.allRejoinedSeconds,
      ...(r.allRejoinedSeconds === undefined ? { error: `${count(r.counts.rejoined)} of ${count(r.atRestart)} in ${r.rejoinLimitSeconds} s` } : partial)
    },
    { group, label: 'half joined again, after listening', unit: 's', better: 'lower', value: r.medianRejoinSeconds, ...partial },
    { group, label: 'failed reconnects and joins (each retried)', unit: 'attempts', better: 'lower', value: r.counts.failures, ...partial },
    { group, label: 'retries while the server stopped or was down', unit: 'attempts', better: 'lower', value: r.counts.retriesPortClosed.count + r.counts.retriesWhileStopping.count, ...partial },
    { group, label: 'reconnects whose TCP connect took ≥ 900 ms (SYN sent again)', unit: 'peers', better: 'lower', value: r.counts.tcpConnectsOver900Ms, ...partial },
    rtt('control-plane p99 0-10 s after listening', r.windows['0-10 s']),
    rtt('control-plane p99 10-30 s after listening', r.windows['10-30 s']),
    rtt('control-plane p99 30-60 s after listening', r.windows['30-60 s']),
    { group, label: `control-plane p99 of every ${r.slidingWindowSeconds} s window under ${TARGET.p99Ms} ms from`, unit: 's after listening', better: 'lower', value: recovered, ...(recovered === undefined ? { error: 'not within 60 s' } : {}) },
    { group, label: 'prober joined again, after listening', unit: 'ms', better: 'lower', value: r.prober.rejoinedAfterListeningMs, ...(r.prober.rejoinedAfterListeningMs === undefined ? { error: 'prober never joined again' } : {}) },
    { group, label: 'server CPU, first 10 s after listening', unit: 'cores', better: 'lower', value: r.serverCoresFirst10s },
    { group, label: 'server peak RSS during the herd', unit: 'MiB', better: 'lower', value: r.peakRssBytes === undefined ? undefined : r.peakRssBytes / MiB, ...partial },
    { group, label: 'RSS settled, 30 s after all joined again (at least 60 s after listening)', unit: 'MiB', better: 'lower', value: r.rssAfterBytes / MiB, ...partial },
    { group, label: 'RSS settled minus before the restart', unit: 'MiB', better: 'lower', value: grewBy / MiB, ...partial },
    { group, label: 'load generator CPU during the herd', unit: 'cores', better: 'lower', value: r.generator.coresHerd },
    {
      group,
      label: `target missed: ${count(r.n)} back, 0 failed, p99 < ${TARGET.p99Ms} ms ${TARGET.recoveredWithinS}-60 s, RSS ≤ before + max(${TARGET.memoryRatio * 100} %, ${TARGET.memoryBytes / MiB} MiB)`,
      unit: 'of 4',
      better: 'lower',
      value: missed.length,
      ...(missed.length > 0 ? { note: missed.join(', ') } : {})
    }
  ]
}
