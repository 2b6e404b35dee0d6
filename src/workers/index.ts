/**
 * `--workers <n>`: several processes on one machine. The primary listens and
 * hands each connection to a worker (primary.ts); the workers are nodes of
 * one cluster through Redis, so peers on different workers see and dial each
 * other (worker.ts). ipc.ts types what they tell each other.
 */
import { CLI_DEFAULTS, type Options } from '../index.js'
import { resolveConfig } from '../options.js'
import { Primary, type Workers } from './primary.js'

export { runWorker } from './worker.js'
export type { Workers } from './primary.js'

/**
 * The primary: listens on the configured port and host, forks `count` workers
 * running this same program, and resolves once every one of them serves.
 * Rejects as `start()` does for a bad option or a port it cannot listen on,
 * and if a worker exits before it serves.
 */
export async function runWorkers (count: number, options: Options): Promise<Workers> {
  const primary = new Primary(resolveConfig(options, CLI_DEFAULTS))
  await primary.start(count)
  return {
    info: primary.info,
    shutdown: async () => await primary.shutdown(),
    kill: () => { primary.kill() },
    reload: () => { primary.reload() }
  }
}
