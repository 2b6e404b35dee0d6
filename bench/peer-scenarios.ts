/**
 * Issue 5's many-peer scenarios, each one server process: (a) joins, then on
 * the same peers (b) the discovery storm or (c) idle memory, and (e) joins
 * through the crypto challenge. A control-plane prober runs throughout, in
 * a thread of this process; (c)'s peers are in generator processes of their
 * own (generators.ts), the others' in this process.
 */
import { libp2pIdentity, withLegacyId, type Identity } from '../test/helpers/keys.js'
import { rssBytes } from '../test/helpers/procfs.js'
import type { Figure, ScenarioContext } from './figures.js'
import { Fleet } from './fleet.js'
import { Generators, SOURCES_PER_PROCESS } from './generators.js'
import { challengeJoin, joinPeers, plainJoin, type JoinResult } from './joins.js'
import { settledRss } from './memory.js'
import { startProber, type ProbeReport } from './prober.js'
import { progress } from './progress.js'
import { roundTrips, type RoundTrips } from './stats.js'
import { discoveryStorm } from './storm.js'
import { processTree, type Target } from './targets.js'

const KiB = 1024
const MiB = 1024 * KiB

/** Issue 5's storm length. */
export const STORM_SECONDS = 30
/** After the joins, before memory is read: time for the join burst's buffers to drain and a GC to run. */
const SETTLE_MS = 5_000
/** Memory is the minimum RSS over this long. */
const MEMORY_SAMPLE_MS = 5_000

export interface Measured {
  figures: Figure[]
  /** Every raw figure, for the JSON file. */
  raw: Record<string, unknown>
}

export const count = (n: number): string => n.toLocaleString('en-US')

function joinFigures (group: string, r: JoinResult): Figure[] {
  const none = r.joined === 0 ? 'no peer joined' : undefined
  return [
    { group, label: 'joins per second', unit: 'joins/s', better: 'higher', value: r.joinsPerSecond, ...(none !== undefined ? { error: none } : {}) },
    { group, label: 'join latency p50, connect + join', unit: 'ms', better: 'lower', value: r.p50Ms, ...(none !== undefined ? { error: none } : {}) },
    { group, label: 'join latency p99, connect + join', unit: 'ms', better: 'lower', value: r.p99Ms, ...(none !== undefined ? { error: none } : {}) },
    // why a run stopped early (its bound, a stall) is in the JSON and on stderr: the label stays the same for both servers
    { group, label: `failed joins of ${count(r.n)}`, unit: 'peers', better: 'lower', value: r.failures },
    { group, label: 'server CPU while joining', unit: 'cores', better: 'lower', value: r.serverCores }
  ]
}

function rttFigures (group: string, when: string, rtt: RoundTrips): Figure[] {
  const none = rtt.sent === 0 ? 'no probe sent' : undefined
  return [
    { group, label: `control-plane round trip p50 ${when}`, unit: 'ms', better: 'lower', value: rtt.p50Ms, ...(none !== undefined ? { error: none } : {}) },
    { group, label: `control-plane round trip p99 ${when}`, unit: 'ms', better: 'lower', value: rtt.p99Ms, ...(none !== undefined ? { error: none } : {}) }
  ]
}

/** Starts the prober (one that reconnects, with `reconnect`) and makes sure it is stopped; resolves with its stop. */
export async function startScenarioProber (target: Target, context: ScenarioContext, reconnect = false): Promise<() => Promise<ProbeReport>> {
  const prober = await startProber(target, reconnect)
  let report: Promise<ProbeReport> | undefined
  const stopProber = async (): Promise<ProbeReport> => { report ??= prober.stop(); return await report }
  context.defer(async () => { await stopProber().catch(() => {}) })
  return stopProber
}

/** Starts the prober (one that reconnects, with `reconnect`) and a fleet in this process, and makes sure both are released. */
export async function setUp (target: Target, context: ScenarioContext, reconnect = false): Promise<{ fleet: Fleet, stopProber: () => Promise<ProbeReport> }> {
  const fleet = new Fleet()
  context.defer(() => { fleet.destroy() })
  const stopProber = await startScenarioProber(target, context, reconnect)
  return { fleet, stopProber }
}

/** (a) N peers join, then (b) the discovery storm on them for STORM_SECONDS. */
export async function joinThenStorm (target: Target, context: ScenarioContext, n: number, joinLimitMs: number, stormSeconds = STORM_SECONDS): Promise<Measured> {
  const { fleet, stopProber } = await setUp(target, context)
  const joinGroup = `(a) join ${count(n)} peers`
  const stormGroup = `(b) storm, ${count(n)} peers, ${stormSeconds} s`
  const joinStart = Date.now()
  const join = await joinPeers(target, fleet, n, plainJoin, joinLimitMs, `join ${count(n)}`)
  const joinEnd = Date.now()
  const announcedWhileJoining = fleet.peerMessages
  if (!target.alive()) throw new Error('server died while peers joined')
  const storm = await discoveryStorm(target, fleet, n, stormSeconds, `storm ${count(n)}`)
  const probes = await stopProber()
  const rttJoin = roundTrips(probes, joinStart, joinEnd)
  const rttStorm = roundTrips(probes, storm.fromMs, storm.toMs)
  fleet.destroy()
  return {
    figures: [
      ...joinFigures(joinGroup, join),
      { group: joinGroup, label: 'load generator CPU while joining', unit: 'cores', better: 'lower', value: join.generatorCores },
      { group: stormGroup, label: 'ws-peer announcements delivered', unit: 'msg/s', better: 'higher', value: storm.deliveredPerSecond },
      { group: stormGroup, label: `share of the demand, ${count(n)}×${count(n - 1)}/10 s`, unit: '%', better: 'higher', value: storm.deliveredPercent },
      { group: stormGroup, label: 'server CPU', unit: 'cores', better: 'lower', value: storm.serverCores },
      ...rttFigures(stormGroup, 'during the storm', rttStorm),
      { group: stormGroup, label: 'connections dropped during the storm', unit: 'peers', better: 'lower', value: storm.dropped },
      { group: stormGroup, label: 'load generator CPU (incl. prober thread)', unit: 'cores', better: 'lower', value: storm.generatorCores }
    ],
    raw: { join, announcedWhileJoining, storm, controlPlane: { whileJoining: rttJoin, duringStorm: rttStorm, proberLost: probes.lost }, dropReasons: Object.fromEntries(fleet.dropReasons) }
  }
}

export interface IdleOptions {
  /** Appended to the figures' groups, e.g. `' on --workers=2'`. */
  where?: string
  /** Also the peers joined and the seconds the joins took, as figures. */
  joinedFigures?: boolean
}

/**
 * (a) N peers join, then (c) the server's RSS with them joined and idle. The
 * peers are in generator processes (generators.ts), at most
 * MAX_PEERS_PER_PROCESS each, each with its own loopback source addresses;
 * this process keeps the prober thread and the clock.
 */
export async function joinThenIdle (target: Target, context: ScenarioContext, n: number, joinLimitMs: number, options: IdleOptions = {}): Promise<Measured> {
  const where = options.where ?? ''
  const idleRss = await settledRss(target, 1_000)
  const generators = await Generators.start(n, context)
  const stopProber = await startScenarioProber(target, context)
  const joinGroup = `(a) join ${count(n)} peers${where}`
  const memoryGroup = `(c) memory, ${count(n)} idle peers${where}`
  progress(`  ${generators.processes} generator process${generators.processes === 1 ? '' : 'es'}, ${count(Math.ceil(n / generators.processes))} peers and ${SOURCES_PER_PROCESS} source addresses each`)
  const joinStart = Date.now()
  const fleetJoin = await generators.join(target, n, joinLimitMs, `join ${count(n)}`)
  const join = fleetJoin.result
  const joinEnd = Date.now()
  if (!target.alive()) throw new Error('server died while peers joined')
  progress(`  memory: settling ${SETTLE_MS / 1000} s, then the minimum RSS over ${MEMORY_SAMPLE_MS / 1000} s`)
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  const afterStart = Date.now()
  const joinedRss = await settledRss(target, MEMORY_SAMPLE_MS)
  const rssByProcess = processTree(target.pid).map((pid) => { try { return rssBytes(pid) } catch { return 0 } })
  const fleet = await generators.status()
  const connected = fleet.connected
  const probes = await stopProber()
  const rttJoin = roundTrips(probes, joinStart, joinEnd)
  const rttAfter = roundTrips(probes, afterStart, Date.now())
  const generatorLifeCpuSeconds = await generators.stop(context)
  progress(`  ${count(connected)} connected after the joins, ${count(fleet.dropped)} dropped; server RSS ${(joinedRss / MiB).toFixed(0)} MiB${rssByProcess.length > 1 ? ` (${rssByProcess.map((b) => (b / MiB).toFixed(0)).join(' + ')})` : ''}`)
  // with fewer peers than asked the figure is still per peer, but not at N: noted, and no ratio drawn
  const partial = connected < n ? `${count(connected)} of ${count(n)} joined` : undefined
  const perPeerKiB = (joinedRss - idleRss) / Math.max(1, connected) / KiB
  const joinedFigures: Figure[] = options.joinedFigures === true
    ? [
        { group: joinGroup, label: 'peers joined', unit: 'peers', better: 'higher', value: join.joined },
        { group: joinGroup, label: 'seconds until all joined or failed', unit: 's', better: 'lower', value: join.seconds, ...(join.bounded ? { note: join.stopped ?? 'stopped' } : {}) }
      ]
    : []
  return {
    figures: [
      ...joinedFigures,
      ...joinFigures(joinGroup, join),
      ...rttFigures(joinGroup, 'while joining', rttJoin),
      { group: joinGroup, label: 'load generator CPU while joining', unit: 'cores', better: 'lower', value: join.generatorCores },
      { group: memoryGroup, label: 'RSS per idle joined peer', unit: 'KiB', better: 'lower', value: perPeerKiB, ...(partial !== undefined ? (connected === 0 ? { error: 'no peer joined' } : { note: partial }) : {}) },
      { group: memoryGroup, label: 'RSS with the peers joined', unit: 'MiB', better: 'lower', value: joinedRss / MiB },
      { group: memoryGroup, label: 'RSS before connecting', unit: 'MiB', better: 'lower', value: idleRss / MiB },
      ...rttFigures(memoryGroup, 'afterwards', rttAfter)
    ],
    raw: {
      join,
      announcedWhileJoining: fleetJoin.announced,
      generator: {
        processes: generators.processes,
        sources: generators.all.map((p) => `${p.sources[0] ?? ''}–${p.sources[p.sources.length - 1] ?? ''}`),
        processesCoresWhileJoining: fleetJoin.generatorProcessesCores,
        benchProcessCoresWhileJoining: fleetJoin.benchProcessCores,
        processesLifeCpuSeconds: generatorLifeCpuSeconds
      },
      memory: { idleRssBytes: idleRss, joinedRssBytes: joinedRss, rssByProcessBytes: rssByProcess, connected, perPeerKiB },
      connectedAfterJoining: fleetJoin.connected,
      dropped: fleet.dropped,
      announcedInAll: fleet.peerMessages,
      controlPlane: { whileJoining: rttJoin, afterwards: rttAfter, proberLost: probes.lost },
      dropReasons: fleet.dropReasons
    }
  }
}

/**
 * (e) joins through the crypto challenge. Each peer closes its connection as
 * soon as it has joined, so the figure is the cost of the challenge (key
 * decoding, peer id, signature check) and of a connection, not of the
 * discovery storm that a growing set of joined peers would add; (a) measures
 * that. `joins` may exceed the identities: keys are reused by later peers.
 */
export async function cryptoJoins (target: Target, context: ScenarioContext, identities: readonly Identity[], keyName: string, joins: number, concurrency: number, joinLimitMs: number): Promise<Measured> {
  const fleet = new Fleet()
  context.defer(() => { fleet.destroy() })
  const group = `(e) crypto joins, ${count(joins)} × ${keyName}, leaving at once`
  const result = await joinPeers(target, fleet, joins, challengeJoin(identities), joinLimitMs, `${keyName} joins`, { concurrency, stay: false })
  return {
    figures: [
      ...joinFigures(group, result),
      { group, label: 'load generator CPU while joining (signing)', unit: 'cores', better: 'lower', value: result.generatorCores }
    ],
    raw: { join: result, keys: identities.length, concurrency }
  }
}

/**
 * Identities for (e), made before anything is timed and shared by both
 * servers. Ed25519 ids are written in the sha2-256 form, the only one the old
 * server derives (this server accepts both forms).
 */
export async function makeIdentities (type: 'Ed25519' | 'RSA', n: number): Promise<Identity[]> {
  const started = Date.now()
  const identities: Identity[] = []
  for (let i = 0; i < n; i++) {
    const identity = await libp2pIdentity(type)
    identities.push(type === 'Ed25519' ? await withLegacyId(identity) : identity)
  }
  progress(`  ${n} ${type} keys generated in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return identities
}
