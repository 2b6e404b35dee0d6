/**
 * The whole machine's CPU use, from /proc/stat, so a run can tell when
 * something other than the server and the load generator was busy: on a
 * 2-core machine, anything else running skews every figure.
 */
import { readFileSync } from 'node:fs'

/** Clock ticks per second of /proc/stat; 100 on every Linux this runs on. */
const CLOCK_TICKS = 100

/**
 * CPU seconds all cores have spent in user, nice and system time since boot:
 * the time processes can be charged with. Interrupt and softirq time (much of
 * the loopback traffic's cost) is charged to no process, so it is left out.
 */
export function machineBusySeconds (): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
  // cpu user nice system …
  const fields = line.trim().split(/\s+/).map(Number)
  return ((fields[1] ?? 0) + (fields[2] ?? 0) + (fields[3] ?? 0)) / CLOCK_TICKS
}

/**
 * Watches a span of time; `stop` tells how many cores processes other than
 * the server, this one and its helpers (`helperCpuSeconds`, their CPU
 * reported so far) kept busy on average.
 */
export function watchOthers (cpuSecondsOfServer: () => number, helperCpuSeconds: () => number = () => 0): { stop: () => number } {
  const started = Date.now()
  const machine0 = machineBusySeconds()
  const server0 = cpuSecondsOfServer()
  const own0 = process.cpuUsage()
  const helpers0 = helperCpuSeconds()
  return {
    stop: () => {
      const wall = (Date.now() - started) / 1000
      const own = process.cpuUsage(own0)
      let server = 0
      try { server = cpuSecondsOfServer() - server0 } catch {}
      const others = machineBusySeconds() - machine0 - server - (own.user + own.system) / 1e6 - (helperCpuSeconds() - helpers0)
      return Math.max(0, others / wall)
    }
  }
}

/**
 * Waits, up to `patienceMs`, until the machine is nearly idle, so that a run
 * starts from the same state as the others (the previous server gone, nothing
 * else busy). Resolves with the cores that were busy at the last look.
 */
export async function settleMachine (patienceMs: number, onWait: (busyCores: number) => void): Promise<number> {
  const deadline = Date.now() + patienceMs
  let warned = false
  for (;;) {
    const before = machineBusySeconds()
    await new Promise((resolve) => setTimeout(resolve, QUIET_SAMPLE_MS))
    const busy = (machineBusySeconds() - before) / (QUIET_SAMPLE_MS / 1000)
    if (busy <= QUIET_CORES || Date.now() > deadline) return busy
    if (!warned) onWait(busy)
    warned = true
  }
}

/** Busy cores below which the machine counts as idle, and how long one look lasts. */
const QUIET_CORES = 0.15
const QUIET_SAMPLE_MS = 500
