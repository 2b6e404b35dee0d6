/**
 * The join/idle scenarios' load generator, in child processes (generator.ts)
 * forked and spoken to over IPC: at most MAX_PEERS_PER_PROCESS peers each,
 * each process connecting from its own slice of loopback source addresses,
 * disjoint from the others' and from this process's own (eio3-client.ts's
 * SOURCE_ADDRESSES). This process keeps the join phase's clock (bound,
 * stall) and merges the processes' tallies; every message is checked on
 * arrival, a failure or an exit of any of them ends the wait, and each one's
 * CPU is read before it is killed.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { inspect } from 'node:util'
import type { ScenarioContext } from './figures.js'
import { isFromGenerator, type FleetStatus, type FromGenerator, type ToGenerator } from './generator-ipc.js'
import { JOIN_CONCURRENCY, joinResult, watchJoins, type JoinResult, type JoinTally } from './joins.js'
import { cpuSecondsOf, type Target } from './targets.js'

const SCRIPT = fileURLToPath(new URL('./generator.js', import.meta.url))

/** Peers one generator process holds at most: half this machine's 20,000 open files per process. */
export const MAX_PEERS_PER_PROCESS = 10_000
/** Loopback source addresses per process: each has its own ~28,000 ephemeral ports, so 20 leave room for TIME_WAIT leftovers of earlier runs. */
export const SOURCES_PER_PROCESS = 20
/** The first process's first address: 127.0.0.2–50 are this process's own clients' (eio3-client.ts). */
const FIRST_SOURCE = 51
/** How long a forked process may take to load, and the processes to answer a stop or a status. */
const ANSWER_PATIENCE_MS = 30_000

/** Generator process `index`'s source addresses: 127.0.0.51–70 for the first, 71–90 for the second, … */
export function sourceSlice (index: number): string[] {
  const first = FIRST_SOURCE + index * SOURCES_PER_PROCESS
  if (first + SOURCES_PER_PROCESS - 1 > 254) throw new Error(`no loopback addresses left for generator process ${index}`)
  return Array.from({ length: SOURCES_PER_PROCESS }, (_, i) => `127.0.0.${first + i}`)
}

/** Every generator process still running, killed if this process exits first (an exit path no cleanup saw). */
const living = new Set<ChildProcess>()
process.once('exit', () => { for (const proc of living) proc.kill('SIGKILL') })

type Joined = Extract<FromGenerator, { type: 'joined' }>

class GeneratorProcess {
  /** Its last progress report. */
  joined = 0
  failed = 0
  ready = false
  /** Its join phase's report, once over. */
  report: Joined | undefined
  /** Status answers by request id. */
  readonly statuses = new Map<number, FleetStatus>()
  /** Set on the first failure, which every later wait throws. */
  failure: string | undefined
  private readonly proc: ChildProcess
  private readonly exited: Promise<void>
  private cpu: number | undefined

  constructor (readonly index: number, readonly sources: string[], onChange: () => void) {
    this.proc = fork(SCRIPT, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
    living.add(this.proc)
    let stderr = ''
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-2000) })
    this.proc.on('message', (message: unknown) => {
      if (!isFromGenerator(message)) this.failure ??= `generator process ${index} sent ${inspect(message).slice(0, 300)}`
      else this.take(message)
      onChange()
    })
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        living.delete(this.proc)
        this.failure ??= `generator process ${index} exited (${String(code ?? signal)}): ${stderr.trim().slice(-300)}`
        onChange()
        resolve()
      })
    })
  }

  private take (message: FromGenerator): void {
    switch (message.type) {
      case 'ready':
        this.ready = true
        return
      case 'progress':
        this.joined = message.joined
        this.failed = message.failed
        return
      case 'joined':
        this.report ??= message
        this.joined = message.tally.latencies.length
        return
      case 'status':
        this.statuses.set(message.id, { connected: message.connected, dropped: message.dropped, peerMessages: message.peerMessages, dropReasons: message.dropReasons })
        return
      case 'failed':
        this.failure ??= `generator process ${this.index}: ${message.error}`
    }
  }

  send (message: ToGenerator): void {
    if (this.proc.connected) this.proc.send(message)
  }

  /** Its CPU so far (user + system, seconds); 0 once it has gone. */
  cpuSeconds (): number {
    try { return this.proc.pid === undefined ? 0 : cpuSecondsOf(this.proc.pid) } catch { return 0 }
  }

  /** Reads its CPU (user + system, seconds) and kills it; safe to call twice, answering the same CPU. */
  async stop (): Promise<number> {
    if (this.cpu === undefined) {
      const alive = this.proc.exitCode === null && this.proc.signalCode === null
      this.cpu = alive ? this.cpuSeconds() : 0
      // its own failure from here on is the bench's doing
      this.failure ??= 'stopped'
      if (alive) this.proc.kill('SIGKILL')
    }
    await this.exited
    return this.cpu
  }
}

/** A join phase over the generator processes. */
export interface FleetJoin {
  result: JoinResult
  /** `ws-peer` announcements the peers had received when the phase ended. */
  announced: number
  /** Connections open then. */
  connected: number
  /** CPU while joining, cores busy on average: the generator processes', and this process's (the prober thread, IPC). */
  generatorProcessesCores: number
  benchProcessCores: number
}

/** `n` split as evenly as whole numbers allow into `parts`. */
const shares = (n: number, parts: number): number[] => Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0))

export class Generators {
  readonly all: GeneratorProcess[]
  private wake: (() => void) | undefined
  private nextStatus = 0
  private stopping: Promise<number> | undefined

  private constructor (processes: number) {
    this.all = Array.from({ length: processes }, (_, i) => new GeneratorProcess(i, sourceSlice(i), () => { this.wake?.() }))
  }

  /**
   * Forks enough generator processes for `peers` (at most
   * MAX_PEERS_PER_PROCESS each) and waits until each has loaded; `context`
   * kills them whatever happens, and counts their CPU as the scenario's own.
   */
  static async start (peers: number, context: ScenarioContext): Promise<Generators> {
    const generators = new Generators(Math.max(1, Math.ceil(peers / MAX_PEERS_PER_PROCESS)))
    context.defer(async () => { await generators.stop(context) })
    await generators.until(() => generators.all.every((p) => p.ready), 'the generator processes to load', ANSWER_PATIENCE_MS)
    return generators
  }

  get processes (): number {
    return this.all.length
  }

  /** Resolves once `condition()` holds; rejects on a process's failure or after `patienceMs`. */
  private async until (condition: () => boolean, what: string, patienceMs: number): Promise<void> {
    const deadline = Date.now() + patienceMs
    for (;;) {
      const failed = this.all.find((p) => p.failure !== undefined)
      if (failed?.failure !== undefined) throw new Error(failed.failure)
      if (condition()) return
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${patienceMs / 1000} s waiting for ${what}`)
      let guard: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => { this.wake = resolve; guard = setTimeout(resolve, left) })
      clearTimeout(guard)
    }
  }

  /**
   * Joins `n` peers to `target`, split evenly over the processes and with
   * JOIN_CONCURRENCY in flight across all of them, as joinPeers does in one
   * process: stops them all after `limitMs`, or once no join has succeeded
   * for STALL_MS, and gives up on those in flight then.
   */
  async join (target: Target, n: number, limitMs: number, label: string): Promise<FleetJoin> {
    const peers = shares(n, this.processes)
    const concurrency = shares(Math.min(JOIN_CONCURRENCY, n), this.processes)
    const started = performance.now()
    const cpu0 = target.cpuSeconds()
    const own0 = process.cpuUsage()
    const children0 = this.cpuSeconds()
    this.all.forEach((p, i) => { p.send({ type: 'join', port: target.port, peers: peers[i], concurrency: Math.max(1, concurrency[i]), sources: p.sources }) })
    let stopped: string | undefined
    let stoppedAt: number | undefined
    const sum = (of: (p: GeneratorProcess) => number): number => this.all.reduce((total, p) => total + of(p), 0)
    const unwatch = watchJoins(n, label, limitMs, () => sum((p) => p.joined), () => sum((p) => p.failed), (reason) => {
      stopped = reason
      stoppedAt = performance.now()
      for (const p of this.all) p.send({ type: 'stop-joining' })
    })
    try {
      await this.until(() => this.all.every((p) => p.report !== undefined), `the generator processes' ${label}`, limitMs + ANSWER_PATIENCE_MS)
    } finally {
      unwatch()
    }
    const wall = ((stoppedAt ?? performance.now()) - started) / 1000
    const own = process.cpuUsage(own0)
    const reports = this.all.map((p) => p.report as Joined)
    const tallies: JoinTally[] = reports.map((r) => r.tally)
    const generatorProcessesCores = (this.cpuSeconds() - children0) / wall
    const benchProcessCores = (own.user + own.system) / 1e6 / wall
    const result = joinResult(n, label, tallies, {
      seconds: wall,
      stopped,
      serverCores: target.alive() ? (target.cpuSeconds() - cpu0) / wall : Number.NaN,
      generatorCores: generatorProcessesCores + benchProcessCores
    })
    return {
      result,
      announced: reports.reduce((total, r) => total + r.fleet.peerMessages, 0),
      connected: reports.reduce((total, r) => total + r.fleet.connected, 0),
      generatorProcessesCores,
      benchProcessCores
    }
  }

  /** What all their peers hold now, summed. */
  async status (): Promise<FleetStatus> {
    const id = this.nextStatus++
    for (const p of this.all) p.send({ type: 'status', id })
    await this.until(() => this.all.every((p) => p.statuses.has(id)), 'the generator processes\' status', ANSWER_PATIENCE_MS)
    const total: FleetStatus = { connected: 0, dropped: 0, peerMessages: 0, dropReasons: {} }
    for (const p of this.all) {
      const s = p.statuses.get(id) as FleetStatus
      total.connected += s.connected
      total.dropped += s.dropped
      total.peerMessages += s.peerMessages
      for (const [reason, times] of Object.entries(s.dropReasons)) total.dropReasons[reason] = (total.dropReasons[reason] ?? 0) + times
    }
    return total
  }

  cpuSeconds (): number {
    return this.all.reduce((sum, p) => sum + p.cpuSeconds(), 0)
  }

  /**
   * Kills them all, their connections with them; resolves with the CPU
   * seconds they used, reported to `context` as the scenario's own. Safe to
   * call twice.
   */
  async stop (context: ScenarioContext): Promise<number> {
    this.stopping ??= (async () => {
      let cpu = 0
      for (const cpuOfOne of await Promise.all(this.all.map(async (p) => await p.stop()))) cpu += cpuOfOne
      context.helperCpu(cpu)
      return cpu
    })()
    return await this.stopping
  }
}
