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
  /** This process's CPU while joining (generator, signing, prober thread), cores busy on average. */
  generatorCores: number
}

/**
 * Connects and joins `n` peers into `fleet`. Stops starting new ones after
 * `limitMs`, or once it has stalled, and gives up on those in flight then.
 */
export interface JoinOptions {
  /** Joins in flight at once; JOIN_CONCURRENCY unless given. */
  concurrency?: number
  /** False: each peer closes its connection as soon as it has joined, so the joined set stays small. */
  stay?: boolean
}

export async function joinPeers (target: Target, fleet: Fleet, n: number, join: JoinProcedure, limitMs: number, label: string, options: JoinOptions = {}): Promise<JoinResult> {
  const concurrency = options.concurrency ?? JOIN_CONCURRENCY
  const stay = options.stay ?? true
  const latencies: number[] = []
  const errors = new Map<string, number>()
  const abort = new AbortController()
  // every peer in flight listens for the bound
  setMaxListeners(0, abort.signal)
  let next = 0
  let connectErrors = 0
  let joinErrors = 0
  let timeouts = 0
  let bounded = false
  const started = performance.now()
  const cpu0 = target.cpuSeconds()
  const own0 = process.cpuUsage()
  const note = (message: string): void => { errors.set(message, (errors.get(message) ?? 0) + 1) }

  let stopped: string | undefined
  let lastProgress = started
  let lastReport = started
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => { finish = resolve })
  const stop = (reason: string): void => {
    bounded = true
    stopped = reason
    abort.abort()
    finish()
  }
  const watchdog = setInterval(() => {
    const now = performance.now()
    if (now - started > limitMs) stop(`stopped at the ${limitMs / 1000} s bound`)
    else if (now - lastProgress > STALL_MS) stop(`stalled: no join for ${STALL_MS / 1000} s`)
    if (now - lastReport >= PROGRESS_EVERY_MS) {
      lastReport = now
      progress(`  ${label}: ${latencies.length} of ${n} joined, ${connectErrors + joinErrors + timeouts} failed, ${((now - started) / 1000).toFixed(0)} s`)
    }
  }, WATCHDOG_EVERY_MS)

  const one = async (index: number): Promise<void> => {
    const t0 = performance.now()
    let client: Eio3Client
    try {
      client = await Eio3Client.connect({ port: target.port, timeoutMs: PEER_TIMEOUT_MS, signal: abort.signal })
    } catch (err) {
      if (bounded) return
      const message = (err as Error).message
      if (message.startsWith('connect timeout')) timeouts++
      else connectErrors++
      note(`connect: ${message}`)
      return
    }
    const cut = (): void => { client.destroy() }
    abort.signal.addEventListener('abort', cut)
    try {
      await join(client, index)
      if (bounded) throw new Error('cut off by the bound')
      latencies.push(performance.now() - t0)
      lastProgress = performance.now()
      if (stay) fleet.add(client)
      else client.close()
    } catch (err) {
      client.destroy()
      if (bounded) return
      const message = (err as Error).message
      if (err instanceof JoinError) joinErrors++
      else if (message.startsWith('no answer')) timeouts++
      else connectErrors++
      note(`join: ${message}`)
    } finally {
      abort.signal.removeEventListener('abort', cut)
    }
  }

  const lane = async (): Promise<void> => {
    while (!bounded && next < n) await one(next++)
  }
  void Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane)).then(() => { finish() })
  await finished
  clearInterval(watchdog)
  const wall = (performance.now() - started) / 1000
  const own = process.cpuUsage(own0)
  const serverCores = target.alive() ? (target.cpuSeconds() - cpu0) / wall : Number.NaN

  const joined = latencies.length
  const notStarted = n - next
  // every peer that did not join failed; those the bound cut off count as timeouts
  const failures = n - joined
  const result: JoinResult = {
    n,
    joined,
    seconds: wall,
    joinsPerSecond: joined / wall,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    connectErrors,
    joinErrors,
    timeouts: failures - connectErrors - joinErrors - notStarted,
    notStarted,
    failures,
    errors: Object.fromEntries([...errors].sort((a, b) => b[1] - a[1]).slice(0, 8)),
    bounded,
    stopped,
    serverCores,
    generatorCores: (own.user + own.system) / 1e6 / wall
  }
  progress(`  ${label}: ${joined} of ${n} joined in ${wall.toFixed(1)} s, ${failures} failed${stopped !== undefined ? ` (${stopped})` : ''}`)
  return result
}
