/**
 * Real errors (a handler that threw, Redis lost) are printed whether or not
 * `DEBUG` asks for them, under the `rendezvous:error` namespace; everything
 * else is `debug` output each module names for itself.
 */
import debug from 'debug'

export const logError = debug('rendezvous:error')
logError.enabled = true

/** What went wrong, in one line: an Error's message, or the value itself. */
export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
