/** Waiting for events and conditions, never for fixed times. */
import { PATIENCE_MS } from './server.js'

/** Resolves once `condition()` is true; checks on every turn of a short poll. */
export async function until (condition: () => boolean, what: string, patienceMs = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + patienceMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** What `eventually` throws when its patience runs out; `last` is what the last probe saw. */
export class TimedOut<T = unknown> extends Error {
  constructor (message: string, readonly last: T) {
    super(message)
  }
}

export interface Polling<T> {
  /** How long to keep probing (PATIENCE_MS unless given). */
  patienceMs?: number
  /** The pause between two probes (20 ms unless given). */
  everyMs?: number
  /** What the last probe saw, for the timeout's message. */
  seen?: (value: T) => string
}

/**
 * Resolves with the first value of `probe()` that `accept` takes, probing
 * every `everyMs`: `until` for a condition that must be fetched (a scrape, a
 * Redis reply, a join's answer). On timeout it throws `TimedOut`, whose
 * message names `what` and what `seen` makes of the last value.
 */
export async function eventually<T> (probe: () => Promise<T>, accept: (value: T) => boolean, what: string, { patienceMs = PATIENCE_MS, everyMs = 20, seen }: Polling<T> = {}): Promise<T> {
  const deadline = Date.now() + patienceMs
  for (;;) {
    const value = await probe()
    if (accept(value)) return value
    if (Date.now() > deadline) throw new TimedOut(`timed out waiting until ${what}${seen === undefined ? '' : ` (${seen(value)})`}`, value)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Rejects with a message naming `what` if `promise` has not settled in time: a guard against hangs. */
export async function within<T> (promise: Promise<T>, what: string, patienceMs = PATIENCE_MS): Promise<T> {
  let guard: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    guard = setTimeout(() => { reject(new Error(`timed out waiting for ${what}`)) }, patienceMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(guard)
  }
}
