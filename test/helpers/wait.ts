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

/** Resolves once `check()` resolves true: `until` for a condition that must be fetched (a scrape, a Redis reply). */
export async function eventually (check: () => Promise<boolean>, what: string, patienceMs = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + patienceMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
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
