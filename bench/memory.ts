/**
 * Scenario (c): the server's resident memory, read from procfs. A settled
 * figure is the minimum over a few seconds of samples, so that garbage not yet
 * collected and transient write buffers count as little as possible.
 */
import type { Target } from './targets.js'

const SAMPLE_EVERY_MS = 100

/** Minimum RSS of the server over `ms`, in bytes. */
export async function settledRss (target: Target, ms: number): Promise<number> {
  let min = target.rssBytes()
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS))
    if (!target.alive()) throw new Error('server died')
    min = Math.min(min, target.rssBytes())
  }
  return min
}
