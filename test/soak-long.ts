/**
 * `npm run soak`: the long soak. Not a `*.test.ts` file, so `npm test` does
 * not run it. Progress goes to stderr, the figures to stdout; exits 1 if
 * anything leaked or a peer saw the protocol misbehave.
 *
 *   SOAK_CYCLES          cycles to run (default 300)
 *   SOAK_CLIENTS         peers per cycle, over both servers (default 50)
 *   SOAK_MINUTES         run this long instead, whatever the cycle count
 *   SOAK_HEAP_MARGIN_MIB how far above its warm baseline the heap may end (default 3:
 *                        with 50 peers a cycle, V8's compiled code alone grows by up to
 *                        2 MiB over the first hundred cycles, then stays flat)
 *   SOAK_SNAPSHOTS       a directory for the server's heap snapshots at the start and the end
 */
import { describeResult, soak } from './helpers/soak.js'

function positive (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${name} must be a positive number, not ${JSON.stringify(raw)}`)
    process.exit(2)
  }
  return value
}

const MiB = 1024 * 1024
const cycles = Math.floor(positive('SOAK_CYCLES', 300))
const clients = Math.floor(positive('SOAK_CLIENTS', 50))
const minutes = process.env.SOAK_MINUTES === undefined ? undefined : positive('SOAK_MINUTES', 10)
const heapMarginBytes = positive('SOAK_HEAP_MARGIN_MIB', 3) * MiB

console.error(`soak: ${minutes !== undefined ? `${minutes} minutes` : `${cycles} cycles`} of ${clients} peers`)
const began = Date.now()
try {
  const result = await soak({
    cycles,
    clients,
    heapMarginBytes,
    ...(process.env.SOAK_SNAPSHOTS !== undefined ? { snapshots: process.env.SOAK_SNAPSHOTS } : {}),
    ...(minutes !== undefined ? { durationMs: minutes * 60_000 } : {}),
    log: (message) => { console.error(`soak: ${((Date.now() - began) / 1000).toFixed(1)} s: ${message}`) },
    progress: ({ cycle, elapsedMs, report, collected }) => {
      const tables = report.stats.map((s) => `${s.connections}c ${s.peers}p ${s.dials}d ${s.relayedStreams}s`).join(' | ')
      console.error(`cycle ${cycle}${minutes === undefined ? `/${cycles}` : ''} ${(elapsedMs / 1000).toFixed(0)} s: heap ${(report.heapUsedBytes / MiB).toFixed(2)} MiB${collected ? ` after gc, ${report.liveSockets} live sockets` : ''}, rss ${(report.rssBytes / MiB).toFixed(1)} MiB, peak ${(report.maxRssBytes / MiB).toFixed(1)} MiB; ${tables}`)
    }
  })
  for (const line of describeResult(result)) console.log(line)
  process.exitCode = result.failures.length === 0 ? 0 : 1
} catch (err) {
  console.error('soak: aborted:', err)
  process.exitCode = 1
}
// the clients of an aborted run may still wait on their guards
process.exit()
