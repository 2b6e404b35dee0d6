/**
 * The restart herd: N peers joined, the server restarted on its port, and
 * every peer reconnecting and joining its same address again at once, as
 * socket.io-client 2.x peers do after a transport close (reconnecting-peer.ts).
 * The reconnecting prober measures the control plane throughout.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { randomAddress } from '../test/helpers/keys.js'
import type { Eio3Client } from './eio3-client.js'
import type { ScenarioContext } from './figures.js'
import { herdFigures, type HerdResult } from './herd-figures.js'
import { Herd } from './herd-log.js'
import { joinAddress, joinPeers, type JoinProcedure } from './joins.js'
import { settledRss } from './memory.js'
import { tcpCounters, tcpCountersSince } from './netstat.js'
import { count, setUp, type Measured } from './peer-scenarios.js'
import { watchPort } from './port-watch.js'
import { progress } from './progress.js'
import { ReconnectingPeer } from './reconnecting-peer.js'
import { roundTrips } from './stats.js'
import type { Target, TargetName } from './targets.js'

const second = 1000
/** A free port below the ephemeral range, so that no client's source port can take it while the server is down. */
export const HERD_PORT = 19190
/** This server drains on SIGTERM; the old one's CLI stops its server only on SIGINT (SIGTERM kills it at once, like a crash). */
const STOP_SIGNAL: Record<TargetName, NodeJS.Signals> = { new: 'SIGTERM', old: 'SIGINT' }
/** After the joins, before the level before the restart is read; the same wait as after the herd. */
const SETTLE_MS = 30 * second
/** Memory is the minimum RSS over this long (memory.ts). */
const MEMORY_SAMPLE_MS = 5 * second
/** The control plane before the restart: probes from this long after the joins until the signal. */
const BEFORE_SKIP_MS = 10 * second
/** After the new server listens: the bound on rejoining, and how long the control-plane windows run. */
const REJOIN_LIMIT_MS = 60 * second
/** The sliding windows that tell when the control plane's p99 came back. */
const SLIDING_WINDOW_S = 10
const RSS_EVERY_MS = 50
const HISTOGRAM_BIN_S = 0.5
const PROGRESS_EVERY_MS = 5 * second
/** Beyond the joins, the longest this scenario runs: settling, the stop's patience and a start, the herd, its settling, the prober's stop. */
export const HERD_SPAN_MS = SETTLE_MS + MEMORY_SAMPLE_MS + 50 * second + REJOIN_LIMIT_MS + SETTLE_MS + MEMORY_SAMPLE_MS + 30 * second

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))) }
const cpuSince = (since: NodeJS.CpuUsage): number => { const u = process.cpuUsage(since); return (u.user + u.system) / 1e6 }

export async function restartHerd (target: Target, context: ScenarioContext, n: number, joinLimitMs: number): Promise<Measured> {
  const { fleet, stopProber } = await setUp(target, context, true)
  const addresses = new Map<Eio3Client, string>()
  const join: JoinProcedure = async (client) => {
    const address = randomAddress()
    addresses.set(client, address)
    await joinAddress(client, address)
  }
  const joined = await joinPeers(target, fleet, n, join, joinLimitMs, `join ${count(n)}`)
  const joinEnd = Date.now()
  if (!target.alive()) throw new Error('server died while peers joined')
  progress(`  settling ${SETTLE_MS / second} s, then the minimum RSS over ${MEMORY_SAMPLE_MS / second} s`)
  await sleep(SETTLE_MS)
  const rssBeforeBytes = await settledRss(target, MEMORY_SAMPLE_MS)

  // the joined peers become reconnecting ones
  const herd = new Herd()
  const peers = fleet.clients.filter((c) => c.connected).map((c) => new ReconnectingPeer(addresses.get(c) as string, target.port, herd, c))
  context.defer(() => { for (const p of peers) p.stop() })
  if (peers.length === 0) throw new Error('no peer joined')
  const rss: Array<[number, number]> = []
  // 0: between the old process's exit and the new one
  const sampler = setInterval(() => { const b = target.rssBytes(); if (b > 0) rss.push([Date.now(), b]) }, RSS_EVERY_MS)
  context.defer(() => { clearInterval(sampler) })
  const port = watchPort(target.port)
  context.defer(port.stop)
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  const tcp0 = tcpCounters()
  const own0 = process.cpuUsage()

  const herdStart = Date.now()
  const signal = STOP_SIGNAL[target.name]
  progress(`  restart: ${signal}, ${count(peers.length)} peers connected`)
  const restart = await target.restart(signal)
  const ownStopping = cpuSince(own0)
  const own1 = process.cpuUsage()
  const cpu0 = target.cpuSeconds()
  let cpu10: number | undefined
  const at10 = setTimeout(() => { cpu10 = target.cpuSeconds() }, 10 * second)
  context.defer(() => { clearTimeout(at10) })
  const opening = await Promise.race([port.opened, sleep(second).then(() => undefined)])
  await port.stop()
  // the port opened before the `Listening` line reached this busy thread
  const listening = Math.min(opening?.listeningAt ?? restart.listeningAt, restart.listeningAt)
  progress(`  exited ${restart.exitedAt - restart.signalledAt} ms after ${signal} (${restart.exit}${restart.killed ? ', killed' : ''}), listening again ${(listening - restart.exitedAt).toFixed(0)} ms later (the line came ${(restart.listeningAt - listening).toFixed(0)} ms after the port opened)`)

  let lastProgress = Date.now()
  const report = (): void => {
    if (Date.now() - lastProgress < PROGRESS_EVERY_MS) return
    lastProgress = Date.now()
    progress(`  herd: ${herd.rejoined} of ${peers.length} joined again, ${((Date.now() - listening) / second).toFixed(0)} s after listening`)
  }
  while (herd.rejoined < peers.length && Date.now() < listening + REJOIN_LIMIT_MS) {
    if (!target.alive()) throw new Error('restarted server died during the herd')
    await sleep(20)
    report()
  }
  loopDelay.disable()
  const herdWall = (Date.now() - listening) / second
  const ownHerd = cpuSince(own1)
  const tcp = tcpCountersSince(tcp0)
  const allAt = herd.rejoined === peers.length ? Math.max(...herd.rejoinTimes) : undefined
  progress(`  herd: ${herd.rejoined} of ${peers.length} joined again${allAt !== undefined ? ` in ${((allAt - listening) / second).toFixed(2)} s` : ` within ${REJOIN_LIMIT_MS / second} s`}; settling`)
  const settleUntil = Math.max(listening + REJOIN_LIMIT_MS, (allAt ?? Date.now()) + SETTLE_MS)
  while (Date.now() < settleUntil) {
    if (!target.alive()) throw new Error('restarted server died after the herd')
    await sleep(Math.min(1000, settleUntil - Date.now()))
    report()
  }
  clearInterval(sampler)
  const settledAt = Date.now()
  const rssAfterBytes = await settledRss(target, MEMORY_SAMPLE_MS)
  const probes = await stopProber()
  const attempts = peers.reduce((sum, p) => sum + p.attempts, 0)
  const connectedAtEnd = peers.filter((p) => p.connected).length
  for (const p of peers) p.stop()
  fleet.destroy()

  const after = rss.filter(([t]) => t >= listening)
  const window = (fromS: number, toS: number): ReturnType<typeof roundTrips> => roundTrips(probes, listening + fromS * second, listening + toS * second)
  const outage = probes.outages.find((o) => o.at >= herdStart)
  const sortedRejoins = [...herd.rejoinTimes].sort((a, b) => a - b)
  const histogram = new Map<number, number>()
  for (const t of sortedRejoins) {
    const bin = Math.floor((t - listening) / second / HISTOGRAM_BIN_S) * HISTOGRAM_BIN_S
    histogram.set(bin, (histogram.get(bin) ?? 0) + 1)
  }
  const result: HerdResult = {
    n,
    signal,
    join: joined,
    atRestart: peers.length,
    droppedBeforeRestart: fleet.dropped,
    rssBeforeBytes,
    beforeRestart: roundTrips(probes, joinEnd + BEFORE_SKIP_MS, herdStart),
    restart,
    listeningAt: listening,
    portOpening: opening ?? null,
    counts: herd.counts({ exitedAt: restart.exitedAt, listeningAt: listening }, attempts),
    allRejoinedSeconds: allAt === undefined ? undefined : (allAt - listening) / second,
    medianRejoinSeconds: sortedRejoins.length === 0 ? undefined : (sortedRejoins[Math.floor(sortedRejoins.length / 2)] - listening) / second,
    rejoinLimitSeconds: REJOIN_LIMIT_MS / second,
    rejoinHistogram: [...histogram],
    connectedAtEnd,
    windows: { '0-10 s': window(0, 10), '10-30 s': window(10, 30), '30-60 s': window(30, 60) },
    slidingWindowSeconds: SLIDING_WINDOW_S,
    slidingP99: Array.from({ length: REJOIN_LIMIT_MS / second - SLIDING_WINDOW_S + 1 }, (_, t) => window(t, t + SLIDING_WINDOW_S).p99Ms),
    prober: { rejoinedAfterListeningMs: outage?.rejoinedAt === undefined ? undefined : outage.rejoinedAt - listening, outages: probes.outages, lost: probes.lost },
    peakRssBytes: after.length === 0 ? undefined : Math.max(...after.map(([, b]) => b)),
    rssAfterBytes,
    rssAfterSecondsFromListening: (settledAt - listening) / second,
    serverCoresFirst10s: cpu10 === undefined ? undefined : (cpu10 - cpu0) / 10,
    generator: {
      coresWhileStopping: ownStopping / ((restart.listeningAt - herdStart) / second),
      coresHerd: ownHerd / herdWall,
      eventLoopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      eventLoopDelayMaxMs: loopDelay.max / 1e6
    },
    tcpCountersDuringHerd: tcp,
    rssTraceMiB: after.filter((_, i) => i % (second / RSS_EVERY_MS) === 0).map(([t, b]) => [Math.round((t - listening) / 100) / 10, Math.round(b / 2 ** 20 * 10) / 10])
  }
  return { figures: herdFigures(result), raw: { ...result } }
}
