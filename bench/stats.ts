/** Small statistics for the benchmark's figures. */
import type { ProbeReport } from './prober.js'

/** Nearest-rank percentile (`p` in 0…100) of `values`; undefined when there are none. */
export function percentile (values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil(p / 100 * sorted.length))
  return sorted[rank - 1]
}

export interface RoundTrips {
  /** Probes sent in the window. */
  sent: number
  /** Probes answered by the time the prober stopped. */
  answered: number
  /** Answers other than `'Peer not found'`. */
  wrongAnswers: number
  p50Ms: number | undefined
  p99Ms: number | undefined
  maxMs: number | undefined
}

/**
 * Round trips of the probes sent in [fromMs, toMs) (epoch ms). A probe still
 * unanswered when the prober stopped counts with the time it had waited so far:
 * a lower bound, so an overloaded server is not flattered by dropping its
 * slowest answers.
 */
export function roundTrips (report: ProbeReport, fromMs: number, toMs: number): RoundTrips {
  const chosen = report.probes.filter((p) => p.sentAt >= fromMs && p.sentAt < toMs)
  const times = chosen.map((p) => p.rttMs ?? report.stoppedAt - p.sentAt)
  return {
    sent: chosen.length,
    answered: chosen.filter((p) => p.rttMs !== undefined).length,
    wrongAnswers: chosen.filter((p) => p.answer !== undefined && p.answer !== 'Peer not found').length,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    maxMs: times.length === 0 ? undefined : Math.max(...times)
  }
}
