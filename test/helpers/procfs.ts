/** A process measured from outside, through procfs, as an operator would. */
import { readFileSync } from 'node:fs'

/** Resident set size of `pid`, in bytes. */
export function rssBytes (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  if (match?.[1] === undefined) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

/** Samples `pid`'s RSS every `everyMs` until stopped; reports the peak. */
export function watchRss (pid: number, everyMs = 20): { stop: () => number } {
  let peak = rssBytes(pid)
  const timer = setInterval(() => {
    try { peak = Math.max(peak, rssBytes(pid)) } catch {}
  }, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      try { peak = Math.max(peak, rssBytes(pid)) } catch {}
      return peak
    }
  }
}
