/**
 * `npm run bench`: runs every scenario against this server and against
 * libp2p-websocket-star-rendezvous@0.4.1, alternating, each in a fresh server
 * process measured from outside; prints one table and writes a JSON file.
 *
 *   npm run bench -- --only=relay     run only the scenarios whose name contains "relay"
 *   npm run bench -- --only=herd      only the restart herd, on both servers (about 5 minutes)
 *   npm run bench -- --only="cluster 30,000"   30,000 peers on --workers=2 over a local Redis, this server only
 *
 * Then the cluster comparison: this server in one process against
 * `--workers=2` clustered over a real Redis, in a second table.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import type { Identity } from '../test/helpers/keys.js'
import { redisAvailable, startRedis, type RedisProcess } from '../test/helpers/redis.js'
import { table, type Figure, type Row, type ScenarioContext } from './figures.js'
import { settleMachine, watchOthers } from './machine.js'
import { cryptoJoins, joinThenIdle, joinThenStorm, makeIdentities, STORM_SECONDS, type Measured } from './peer-scenarios.js'
import { HERD_PORT, HERD_SPAN_MS, restartHerd } from './restart-herd.js'
import { progress } from './progress.js'
import { percentile } from './stats.js'
import { relayThroughput, type RelayResult } from './relay.js'
import { startTarget, type Target, type TargetName, type TargetOptions } from './targets.js'

const second = 1000
const MiB = 1024 * 1024

interface Scenario {
  name: string
  /** The server's options; a function when they are known only once `prepare` has run (a Redis's URL). */
  options?: TargetOptions | (() => TargetOptions)
  /** The servers it runs on, both unless given; the other's column shows `-`. */
  servers?: readonly TargetName[]
  /** Why it cannot run here (e.g. redis-server is missing), checked first: it is then skipped with that message. */
  skip?: () => string | undefined
  /** Work done once before both servers run it, untimed (e.g. generating keys, starting Redis). */
  prepare?: () => Promise<void>
  /** Undoes `prepare` after its runs, whatever happened. */
  release?: () => Promise<void>
  /** Hard bound on one server's run: past it the run is reported as failed. */
  limitMs: number
  /** Runs on each server, alternating between them; each figure is the median of its runs. 1 unless given. */
  rounds?: number
  run: (target: Target, context: ScenarioContext) => Promise<Measured>
}

function relayFigures (r: RelayResult): Measured {
  if (!r.intact) throw new Error(`data arrived altered (pairs ${r.altered.join(', ')})`)
  return {
    figures: [
      { label: 'throughput', unit: 'MiB/s', better: 'higher', value: r.mibPerSecond },
      { label: 'server peak RSS above idle', unit: 'MiB', better: 'lower', value: r.peakRssMiB - r.idleRssMiB },
      // the peers run in their own processes, but on a small machine they still share its cores with the server: this is the server's own cost
      { label: 'server CPU per MiB relayed', unit: 'ms', better: 'lower', value: 1000 * r.serverCpuSeconds / (r.totalBytes / MiB) }
    ],
    raw: { ...r }
  }
}

/** A relay scenario's transfer, within its scenario's limit, which also covers the peers' joins and dials. */
const RELAY_LIMIT_MS = 110 * second
/**
 * A relay run lasts seconds, and on two cores shared with its peer processes
 * its CPU per MiB moves by a third from one run to the next (how the
 * scheduler batches the reads): the median of three runs is the figure.
 */
const RELAY_ROUNDS = 3

/**
 * Joins of each size: the bound leaves this server room to meet issue 5's 90 s
 * for 10,000 and stops an old server that has fallen over (which the stall
 * check does sooner). 19,000 and 30,000 have no time target, only that all
 * join: their bounds leave room for a machine shared with other work, which
 * slows joins threefold here; 30,000 over two workers, where a join also
 * costs a Redis round trip and a hop through the primary, gets twice as long.
 */
const JOIN_LIMIT_MS = { 1000: 60 * second, 2000: 90 * second, 10000: 100 * second, 19000: 240 * second, 30000: 480 * second }
/** The cluster's own Redis for the 30,000-peer scenario, while it runs. */
let clusterRedis: RedisProcess | undefined
/**
 * (e): joins, pre-generated keys and joins in flight. RSA-2048 generation
 * takes ~¼ s a key here, so fewer keys are made and reused, with fewer joins
 * in flight than keys.
 */
const ED25519 = { joins: 1000, keys: 1000, concurrency: 200 }
const RSA = { joins: 500, keys: 60, concurrency: 50 }
let ed25519: Identity[] = []
let rsa: Identity[] = []

const scenarios: Scenario[] = [
  {
    name: 'relay 512 MiB in 64 KiB chunks',
    rounds: RELAY_ROUNDS,
    limitMs: 150 * second,
    run: async (target, context) => relayFigures(await relayThroughput(target, context, { pairs: 1, processes: 2, chunkBytes: 64 * 1024, bytesPerRelay: 512 * MiB }, RELAY_LIMIT_MS))
  },
  {
    name: 'relay 64 MiB in 1 KiB chunks',
    rounds: RELAY_ROUNDS,
    limitMs: 150 * second,
    run: async (target, context) => relayFigures(await relayThroughput(target, context, { pairs: 1, processes: 2, chunkBytes: 1024, bytesPerRelay: 64 * MiB }, RELAY_LIMIT_MS))
  },
  {
    name: 'relay 50 × 4 MiB at once in 64 KiB chunks',
    rounds: RELAY_ROUNDS,
    limitMs: 150 * second,
    run: async (target, context) => relayFigures(await relayThroughput(target, context, { pairs: 50, processes: 5, chunkBytes: 64 * 1024, bytesPerRelay: 4 * MiB }, RELAY_LIMIT_MS))
  },
  {
    name: 'peers 1,000: join, discovery storm',
    limitMs: JOIN_LIMIT_MS[1000] + STORM_SECONDS * second + 60 * second,
    run: async (target, context) => await joinThenStorm(target, context, 1000, JOIN_LIMIT_MS[1000])
  },
  {
    name: 'peers 2,000: join, discovery storm',
    limitMs: JOIN_LIMIT_MS[2000] + STORM_SECONDS * second + 60 * second,
    run: async (target, context) => await joinThenStorm(target, context, 2000, JOIN_LIMIT_MS[2000])
  },
  {
    name: 'peers 10,000: join, idle memory',
    limitMs: JOIN_LIMIT_MS[10000] + 80 * second,
    run: async (target, context) => await joinThenIdle(target, context, 10000, JOIN_LIMIT_MS[10000])
  },
  {
    // this machine's ceiling: 20,000 open files per process, for the server and for the generator
    name: 'peers 19,000: join, idle memory',
    limitMs: JOIN_LIMIT_MS[19000] + 80 * second,
    run: async (target, context) => await joinThenIdle(target, context, 19000, JOIN_LIMIT_MS[19000])
  },
  {
    // 15,000 a worker; the old server cannot cluster
    name: 'cluster 30,000 peers on --workers=2',
    servers: ['new'],
    skip: () => redisAvailable() ? undefined : 'redis-server is not installed',
    prepare: async () => { clusterRedis = await startRedis() },
    release: async () => { await clusterRedis?.stop(); clusterRedis = undefined },
    options: () => {
      if (clusterRedis === undefined) throw new Error('no Redis started')
      return { args: ['--workers=2', `--redis=${clusterRedis.url}`] }
    },
    limitMs: JOIN_LIMIT_MS[30000] + 80 * second,
    run: async (target, context) => await joinThenIdle(target, context, 30000, JOIN_LIMIT_MS[30000], { where: ' on --workers=2', joinedFigures: true })
  },
  {
    name: 'restart herd, 2,000 peers',
    // a fixed port, so that the restarted server is where the peers come back to
    options: { port: HERD_PORT },
    limitMs: JOIN_LIMIT_MS[2000] + HERD_SPAN_MS,
    run: async (target, context) => await restartHerd(target, context, 2000, JOIN_LIMIT_MS[2000])
  },
  {
    name: 'crypto joins Ed25519',
    options: { cryptoChallenge: true },
    prepare: async () => { if (ed25519.length === 0) ed25519 = await makeIdentities('Ed25519', ED25519.keys) },
    limitMs: 120 * second,
    run: async (target, context) => await cryptoJoins(target, context, ed25519, 'Ed25519', ED25519.joins, ED25519.concurrency, 60 * second)
  },
  {
    name: 'crypto joins RSA-2048',
    options: { cryptoChallenge: true },
    prepare: async () => { if (rsa.length === 0) rsa = await makeIdentities('RSA', RSA.keys) },
    limitMs: 120 * second,
    run: async (target, context) => await cryptoJoins(target, context, rsa, 'RSA-2048', RSA.joins, RSA.concurrency, 60 * second)
  }
]

/** Cores other processes may keep busy before a run's figures are flagged as disturbed. */
const OTHERS_TOLERATED_CORES = 0.2
/** Before each run, how long to wait for the machine to go idle. */
const QUIET_PATIENCE_MS = 30 * second
const disturbed: string[] = []

async function runOn (name: TargetName, scenario: Scenario, who = name === 'new' ? 'this server' : 'old server 0.4.1'): Promise<Measured | Error> {
  progress(`${scenario.name}: ${who}`)
  const cleanups: Array<() => void | Promise<void>> = []
  let target: Target | undefined
  let guard: NodeJS.Timeout | undefined
  try {
    await settleMachine(QUIET_PATIENCE_MS, (busy) => { progress(`  waiting up to ${QUIET_PATIENCE_MS / second} s for other processes to finish (${busy.toFixed(2)} cores busy)`) })
    target = await startTarget(name, typeof scenario.options === 'function' ? scenario.options() : scenario.options)
    let helperCpu = 0
    const others = watchOthers(target.cpuSeconds, () => helperCpu)
    const running = scenario.run(target, { defer: (cleanup) => { cleanups.push(cleanup) }, helperCpu: (seconds) => { helperCpu += seconds } })
    const bound = new Promise<never>((_resolve, reject) => {
      guard = setTimeout(() => { reject(new Error(`no result within ${scenario.limitMs / second} s`)) }, scenario.limitMs)
    })
    const measured = await Promise.race([running, bound])
    const otherCores = others.stop()
    if (otherCores > OTHERS_TOLERATED_CORES) {
      disturbed.push(`${scenario.name} on ${who}: other processes kept ${otherCores.toFixed(2)} cores busy`)
      progress(`  warning: other processes kept ${otherCores.toFixed(2)} cores busy meanwhile`)
    }
    return { figures: measured.figures, raw: { ...measured.raw, otherProcessesCores: otherCores } }
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err))
    progress(`  failed: ${error.message}`)
    return error
  } finally {
    clearTimeout(guard)
    for (const cleanup of cleanups.reverse()) {
      try { await cleanup() } catch {}
    }
    await target?.stop()
  }
}

/** Each figure's median over the runs of one scenario on one server, or the first failure if a run failed; undefined when it did not run there. */
function medianRun (runs: ReadonlyArray<Measured | Error>): Measured | Error | undefined {
  if (runs.length === 0) return undefined
  const failed = runs.find((run) => run instanceof Error)
  if (failed !== undefined) return failed
  const measured = runs as readonly Measured[]
  if (measured.length === 1) return measured[0]
  const figures = measured[0].figures.map((figure) => {
    const values = measured.flatMap((run) => run.figures.find((f) => f.group === figure.group && f.label === figure.label)?.value ?? [])
    return { ...figure, value: percentile(values, 50) }
  })
  return { figures, raw: { medianOf: measured.length, runs: measured.map((run) => run.raw) } }
}

/** A server's result: measured, failed, or not run there (shown as `-`). */
type Result = Measured | Error | undefined

/** One row per figure either server reported, in the order they came. */
function rowsOf (scenario: Scenario, results: Record<TargetName, Result>): Row[] {
  const keyOf = (f: Figure): string => `${f.group ?? scenario.name}\u0000${f.label}`
  const order = new Map<string, Figure>()
  for (const result of [results.new, results.old]) {
    if (result === undefined || result instanceof Error) continue
    for (const f of result.figures) if (!order.has(keyOf(f))) order.set(keyOf(f), f)
  }
  if (order.size === 0) {
    const row: Row = { scenario: scenario.name, label: 'run', unit: '', better: 'higher' }
    for (const name of ['new', 'old'] as const) {
      const result = results[name]
      if (result instanceof Error) row[`${name}Error`] = result.message
    }
    return [row]
  }
  return [...order.entries()].map(([key, figure]) => {
    const row: Row = { scenario: figure.group ?? scenario.name, label: figure.label, unit: figure.unit, better: figure.better }
    for (const name of ['new', 'old'] as const) {
      const result = results[name]
      if (result === undefined) continue
      if (result instanceof Error) { row[`${name}Error`] = result.message; continue }
      const mine = result.figures.find((f) => keyOf(f) === key)
      if (mine?.error !== undefined) row[`${name}Error`] = mine.error
      else row[name] = mine?.value
      if (mine?.note !== undefined) row[`${name}Note`] = mine.note
    }
    return row
  })
}

/**
 * The cluster scenario: enough peers that one process's announcement budget
 * (600,000 a second) cannot meet the demand (3,000 × 2,999 / 10 s ≈ 900,000),
 * joined and stormed on one process, then on two workers sharing the port.
 */
const CLUSTER = { peers: 3000, joinLimitMs: 90 * second, stormSeconds: 15 }
const CLUSTER_SCENARIO = 'cluster: 1 process vs --workers=2'

async function clusterComparison (): Promise<{ rows: Row[], raw: Record<string, unknown> } | undefined> {
  if (!redisAvailable()) {
    progress(`${CLUSTER_SCENARIO}: skipped, redis-server is not installed`)
    return undefined
  }
  const scenario: Scenario = {
    name: CLUSTER_SCENARIO,
    limitMs: CLUSTER.joinLimitMs + CLUSTER.stormSeconds * second + 60 * second,
    run: async (target, context) => await joinThenStorm(target, context, CLUSTER.peers, CLUSTER.joinLimitMs, CLUSTER.stormSeconds)
  }
  const one = await runOn('new', scenario, '1 process')
  const redis = await startRedis()
  let two: Measured | Error
  try {
    two = await runOn('new', { ...scenario, options: { args: ['--workers=2', `--redis=${redis.url}`] } }, '2 workers over Redis')
  } finally {
    await redis.stop()
  }
  const rows = rowsOf(scenario, { new: two, old: one }).map((row) => ({ ...row, scenario: `cluster ${row.scenario}` }))
  const rawOf = (r: Measured | Error): unknown => r instanceof Error ? { error: r.message } : r.raw
  return { rows, raw: { oneProcess: rawOf(one), twoWorkers: rawOf(two) } }
}

async function main (): Promise<void> {
  const began = Date.now()
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length)
  const chosen = scenarios.filter((s) => only === undefined || s.name.includes(only))
  const rows: Row[] = []
  const raw: Record<string, Record<TargetName, unknown>> = {}
  for (const scenario of chosen) {
    const skipped = scenario.skip?.()
    if (skipped !== undefined) {
      progress(`${scenario.name}: skipped, ${skipped}`)
      continue
    }
    const servers = scenario.servers ?? ['new', 'old']
    // alternate: this server, then the old one, each in a fresh process
    const runs: Record<TargetName, Array<Measured | Error>> = { new: [], old: [] }
    try {
      if (scenario.prepare !== undefined) {
        progress(`${scenario.name}: preparing`)
        await scenario.prepare()
      }
      for (let round = 0; round < (scenario.rounds ?? 1); round++) {
        for (const name of servers) runs[name].push(await runOn(name, scenario))
      }
    } catch (err) {
      // only prepare throws (runOn answers its failures): then it failed on each server
      const error = err instanceof Error ? err : new Error(String(err))
      progress(`  failed to prepare: ${error.message}`)
      for (const name of servers) runs[name] = [error]
    } finally {
      await scenario.release?.()
    }
    const results = { new: medianRun(runs.new), old: medianRun(runs.old) }
    rows.push(...rowsOf(scenario, results))
    const rawOf = (r: Result): unknown => r === undefined ? { notRun: `runs on ${servers.join(' and ')} only` } : r instanceof Error ? { error: r.message } : r.raw
    raw[scenario.name] = { new: rawOf(results.new), old: rawOf(results.old) }
  }
  const cluster = only === undefined || CLUSTER_SCENARIO.includes(only) ? await clusterComparison() : undefined
  if (cluster !== undefined) raw[CLUSTER_SCENARIO] = cluster.raw
  const minutes = (Date.now() - began) / 60_000
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}`
  if (rows.length > 0) process.stdout.write(`\n${table(rows)}\n`)
  if (cluster !== undefined) process.stdout.write(`\n${table(cluster.rows, ['2 workers', '1 process'])}\n`)
  process.stdout.write(`\nMachine: ${machine}\nWall time: ${minutes.toFixed(1)} min\n`)
  for (const line of disturbed) process.stdout.write(`Disturbed: ${line}; its figures are suspect.\n`)
  mkdirSync('bench-results', { recursive: true })
  const file = 'bench-results/latest.json'
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), machine, wallMinutes: minutes, disturbed, rows, clusterRows: cluster?.rows ?? [], raw }, null, 2))
  process.stdout.write(`Results: ${file}\n`)
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`)
  process.exit(1)
})
