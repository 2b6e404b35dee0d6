import { inspect } from 'node:util'

/**
 * A protocol error argument as text for a failure message. The server sends a
 * string, shown as it is; anything else is shown as inspect() shows it, not
 * as `[object Object]`.
 */
export function errorText (error: unknown): string {
  return typeof error === 'string' ? error : inspect(error)
}
