/**
 * Scenarios (a) and (e): N peers connect and join as fast as the server
 * accepts them, with a bounded number in flight; each join is timed from the
 * TCP connect to the join's acknowledgement.
 */
import { setMaxListeners } from 'node:events'
import { performance } from 'node:perf_hooks'
import { addressOf, randomAddress, type Identity } from '../test/helpers/keys.js'
import { Eio3Client } from './eio3-client.js'
import { errorText } from './error-text.js'
import type { Fleet } from './fleet.js'
import { progress } from './progress.js'
import { percentile } from './stats.js'
import type { Target } from './targets.js'

/** Joins in flight at once: enough to keep a server busy, few enough not to measure queueing in the generator. */
export const JOIN_CONCURRENCY = 200
/** One peer's connect plus join must finish in this long, socket.io-client 2.x's own connect timeout. */
export const PEER_TIMEOUT_MS = 20_000
/** A phase where no join has succeeded for this long has stalled, and ends: every attempt in flight has had PEER_TIMEOUT_MS by then. */
export const STALL_MS = PEER_TIMEOUT_MS + 5_000
const PROGRESS_EVERY_MS = 5_000
const WATCHDOG_EVERY_MS = 250

/** How one connected peer joins; rejects with the server's error. */
export type JoinProcedure = (client: Eio3Client, index: number) => Promise<void>

/** Crypto challenge off: one `ss-join` of `address` with empty data; rejects with a JoinError when the server answers an error. */
export async function joinAddress (client: Eio3Client, address: string): Promise<void> {
  const ack = await client.request('ss-join', [address, ''], PEER_TIMEOUT_MS)
  if (ack.error !== null) throw new JoinError(errorText(ack.error))
}

/** Crypto challenge off, a random address. */
export const plainJoin: JoinProcedure = async (client) => { await joinAddress(client, randomAddress()) }

/**
 * Crypto challenge on: public key → nonce, then the nonce's signature → joined.
 * Peer `index` uses identity `index % identities.length`, so keys are reused
 * when there are more joins than keys (by peers that have left by then, as long
 * as fewer joins than keys are in flight).
 */
export function challengeJoin (identities: readonly Identity[]): JoinProcedure {
  return async (client, index) => {
    const identity = identities[index % identities.length]
    const address = addressOf(identity.id)
    const challenge = await client.request('ss-join', [address, identity.publicKeyHex], PEER_TIMEOUT_MS)
    if (challenge.error !== null) throw new JoinError(errorText(challenge.error))
    const nonce = challenge.args[1]
    if (typeof nonce !== 'string') throw new JoinError('no nonce in the challenge')
    const answer = await client.request('ss-join', [address, await identity.sign(Buffer.from(nonce))], PEER_TIMEOUT_MS)
    if (answer.error !== null) throw new JoinError(errorText(answer.error))
  }
}

/** The server answered the join with an error. */
export class JoinError extends Error {}

export interface JoinResult {
  n: number
  joined: number
  /** Seconds from the first connect until every peer had joined or failed, or the phase was stopped. */
  seconds: number
  joinsPerSecond: number
  p50Ms: number | undefined
  p99Ms: number | undefined
  /** Connection refused, reset or closed before joining. */
  connectErrors: number
  /** Joins answered with an error. */
  joinErrors: number
  /** Connects or joins with no answer within PEER_TIMEOUT_MS, or cut off in flight by the phase bound. */
  timeouts: number
  /** Peers never started because the phase bound was reached. */
  notStarted: number
  /** n − joined: every peer that did not join, for whatever reason. */
  failures: number
  /** Up to a few error messages with their counts. */
  errors: Record<string, number>
  /** True when the phase bound or a stall stopped it before every peer had its chance. */
  bounded: boolean
  /** Why, then. */
  stopped: string | undefined
  /** Server CPU while joining, cores busy on average, from procfs. */
  serverCores: number
  /** The load generator's CPU while joining (its processes' if it has any, and this one's: signing, the prober thread), cores busy on average. */
  generatorCores: number
}

export interface JoinOptions {
  /** Joins in flight at once; JOIN_CONCURRENCY unless given. */
  concurrency?: number
  /** False: each peer closes its connection as soon as it has joined, so the joined set stays small. */
  stay?: boolean
  /** Source addresses, peer i connecting from the (i mod length)th; by default Eio3Client's own round robin. */
  sources?: readonly string[]
}

/**
 * A join phase's counts, from one process or from each generator process
 * (sent over IPC, so plain data): what a JoinResult is made of.
 */
export interface JoinTally {
  /** Peers started; the rest were never tried. */
  started: number
  /** Connect plus join, in ms, of each peer that joined. */
  latencies: number[]
  /** Connection refused, reset or closed before joining. */
  connectErrors: number
  /** Joins answered with an error. */
  joinErrors: number
  /** Each error message with its count. */
  errors: Record<string, number>
}

/**
 * Connects and joins `n` peers into `fleet`, `concurrency` at a time, with
 * no bound of its own: whoever runs it (joinPeers here, or the bench over
 * IPC for a generator process) watches the time and calls stop(), which
 * gives up on those in flight.
 */
export class JoinRun {
  readonly latencies: number[] = []
  connectErrors = 0
  joinErrors = 0
  /** Connects and joins with no answer within PEER_TIMEOUT_MS. */
  timeouts = 0
  /** Peers started so far. */
  started = 0
  /** Resolves once every peer has joined or failed, or stop() was called. */
  readonly done: Promise<void>
  private readonly errors = new Map<string, number>()
  private readonly abort = new AbortController()
  private stopped = false
  private finish: () => void = () => {}

  constructor (private readonly port: number, private readonly fleet: Fleet, readonly n: number, private readonly join: JoinProcedure, options: JoinOptions = {}) {
    // every peer in flight listens for the stop
    setMaxListeners(0, this.abort.signal)
    this.done = new Promise<void>((resolve) => { this.finish = resolve })
    const concurrency = options.concurrency ?? JOIN_CONCURRENCY
    const stay = options.stay ?? true
    const sources = options.sources !== undefined && options.sources.length > 0 ? options.sources : undefined
    const lane = async (): Promise<void> => {
      while (!this.stopped && this.started < n) await this.one(this.started++, stay, sources)
    }
    void Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane)).then(() => { this.finish() })
  }

  /** Attempts that failed so far. */
  get failed (): number {
    return this.connectErrors + this.joinErrors + this.timeouts
  }

  stop (): void {
    this.stopped = true
    this.abort.abort()
    this.finish()
  }

  tally (): JoinTally {
    return { started: this.started, latencies: [...this.latencies], connectErrors: this.connectErrors, joinErrors: this.joinErrors, errors: Object.fromEntries(this.errors) }
  }

  private note (message: string): void {
    this.errors.set(message, (this.errors.get(message) ?? 0) + 1)
  }

  private async one (index: number, stay: boolean, sources: readonly string[] | undefined): Promise<void> {
    const t0 = performance.now()
    const signal = this.abort.signal
    let client: Eio3Client
    try {
      client = await Eio3Client.connect({ port: this.port, timeoutMs: PEER_TIMEOUT_MS, signal, ...(sources !== undefined ? { localAddress: sources[index % sources.length] } : {}) })
    } catch (err) {
      if (this.stopped) return
      const message = (err as Error).message
      if (message.startsWith('connect timeout')) this.timeouts++
      else this.connectErrors++
      this.note(`connect: ${message}`)
      return
    }
    const cut = (): void => { client.destroy() }
    signal.addEventListener('abort', cut)
    try {
      await this.join(client, index)
      if (this.stopped) throw new Error('cut off by the bound')
      this.latencies.push(performance.now() - t0)
      if (stay) this.fleet.add(client)
      else client.close()
    } catch (err) {
      client.destroy()
      if (this.stopped) return
      const message = (err as Error).message
      if (err instanceof JoinError) this.joinErrors++
      else if (message.startsWith('no answer')) this.timeouts++
      else this.connectErrors++
      this.note(`join: ${message}`)
    } finally {
      signal.removeEventListener('abort', cut)
    }
  }
}

/**
 * Watches a join phase from the first connect: every PROGRESS_EVERY_MS a
 * progress line, and `stop(reason)` once `limitMs` has passed or no join has
 * succeeded for STALL_MS. Returns the function that ends the watch.
 */
export function watchJoins (n: number, label: string, limitMs: number, joined: () => number, failed: () => number, stop: (reason: string) => void): () => void {
  const started = performance.now()
  let lastJoined = 0
  let lastProgress = started
  let lastReport = started
  let over = false
  const watchdog = setInterval(() => {
    const now = performance.now()
    const joinedNow = joined()
    if (joinedNow > lastJoined) {
      lastJoined = joinedNow
      lastProgress = now
    }
    const reason = now - started > limitMs
      ? `stopped at the ${limitMs / 1000} s bound`
      : now - lastProgress > STALL_MS ? `stalled: no join for ${STALL_MS / 1000} s` : undefined
    if (reason !== undefined && !over) {
      over = true
      stop(reason)
    }
    if (now - lastReport >= PROGRESS_EVERY_MS) {
      lastReport = now
      progress(`  ${label}: ${joinedNow} of ${n} joined, ${failed()} failed, ${((now - started) / 1000).toFixed(0)} s`)
    }
  }, WATCHDOG_EVERY_MS)
  return () => { clearInterval(watchdog) }
}

/** How a join phase ended, beside its tallies. */
export interface JoinEnd {
  seconds: number
  /** Why it was stopped before every peer had its chance, if it was. */
  stopped: string | undefined
  serverCores: number
  generatorCores: number
}

/** One JoinResult from the tallies of every process that joined peers, and a progress line with it. */
export function joinResult (n: number, label: string, tallies: readonly JoinTally[], end: JoinEnd): JoinResult {
  const latencies = tallies.flatMap((t) => t.latencies)
  const errors = new Map<string, number>()
  for (const t of tallies) for (const [message, times] of Object.entries(t.errors)) errors.set(message, (errors.get(message) ?? 0) + times)
  const sum = (of: (t: JoinTally) => number): number => tallies.reduce((total, t) => total + of(t), 0)
  const joined = latencies.length
  const connectErrors = sum((t) => t.connectErrors)
  const joinErrors = sum((t) => t.joinErrors)
  const notStarted = n - sum((t) => t.started)
  // every peer that did not join failed; those the bound cut off count as timeouts
  const failures = n - joined
  const result: JoinResult = {
    n,
    joined,
    seconds: end.seconds,
    joinsPerSecond: joined / end.seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    connectErrors,
    joinErrors,
    timeouts: failures - connectErrors - joinErrors - notStarted,
    notStarted,
    failures,
    errors: Object.fromEntries([...errors].sort((a, b) => b[1] - a[1]).slice(0, 8)),
    bounded: end.stopped !== undefined,
    stopped: end.stopped,
    serverCores: end.serverCores,
    generatorCores: end.generatorCores
  }
  progress(`  ${label}: ${joined} of ${n} joined in ${end.seconds.toFixed(1)} s, ${failures} failed${end.stopped !== undefined ? ` (${end.stopped})` : ''}`)
  return result
}

/**
 * Connects and joins `n` peers into `fleet`, in this process. Stops starting
 * new ones after `limitMs`, or once it has stalled, and gives up on those in
 * flight then.
 */
export async function joinPeers (target: Target, fleet: Fleet, n: number, join: JoinProcedure, limitMs: number, label: string, options: JoinOptions = {}): Promise<JoinResult> {
  const started = performance.now()
  const cpu0 = target.cpuSeconds()
  const own0 = process.cpuUsage()
  const run = new JoinRun(target.port, fleet, n, join, options)
  let stopped: string | undefined
  const unwatch = watchJoins(n, label, limitMs, () => run.latencies.length, () => run.failed, (reason) => { stopped = reason; run.stop() })
  await run.done
  unwatch()
  const wall = (performance.now() - started) / 1000
  const own = process.cpuUsage(own0)
  return joinResult(n, label, [run.tally()], {
    seconds: wall,
    stopped,
    serverCores: target.alive() ? (target.cpuSeconds() - cpu0) / wall : Number.NaN,
    generatorCores: (own.user + own.system) / 1e6 / wall
  })
}
