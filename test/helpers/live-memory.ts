/** What a server under test holds once its garbage is collected, as test/fixtures/live-memory.mjs reports it. */
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { CliServer } from './server.js'
import { until } from './wait.js'

const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/live-memory.mjs', import.meta.url))

/** The environment that lets `liveBytes` measure a CLI started with it. */
export const LIVE_MEMORY_ENV = { NODE_OPTIONS: `--expose-gc --import=${pathToFileURL(SCRIPT).href}` }

/** V8 heap used plus memory outside it (such as Buffers) after a full collection, in bytes. */
export async function liveBytes (server: Pick<CliServer, 'proc' | 'output'>): Promise<number> {
  const reports = (): number[] => [...server.output().stderr.matchAll(/^# live-memory (\d+)$/gm)].map((match) => Number(match[1]))
  const before = reports().length
  server.proc.kill('SIGUSR2')
  await until(() => reports().length > before, `process ${String(server.proc.pid)} reports its live memory`)
  return reports()[before]
}
