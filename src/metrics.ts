/**
 * Prometheus metrics. Each server has its own registry, so several servers in
 * one process (tests start many) never collide on metric names. When metrics
 * are off, every method is a no-op and nothing is registered.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'

/** Figures read at scrape time rather than counted on the hot path. */
export interface Gauges {
  peers: () => number
  relayedStreams: () => number
}

export interface Metrics {
  readonly enabled: boolean
  joinAttempt: () => void
  joinSuccess: () => void
  joinFailure: () => void
  dialAttempt: () => void
  dialSuccess: () => void
  dialFailure: () => void
  /** Bytes delivered to a relay's receiver. */
  relayed: (bytes: number) => void
  /** Prometheus text exposition, or undefined when metrics are off. */
  scrape: () => Promise<{ contentType: string, body: string } | undefined>
}

const noop = (): void => {}

const disabled: Metrics = {
  enabled: false,
  joinAttempt: noop,
  joinSuccess: noop,
  joinFailure: noop,
  dialAttempt: noop,
  dialSuccess: noop,
  dialFailure: noop,
  relayed: noop,
  scrape: async () => undefined
}

export function createMetrics (enabled: boolean, gauges: Gauges): Metrics {
  if (!enabled) return disabled
  const registry = new Registry()
  const registers = [registry]
  collectDefaultMetrics({ register: registry })

  // The old server's names, kept as they were: dashboards already use them.
  new Gauge({ name: 'rendezvous_peers', help: 'peers online now', registers, collect () { this.set(gauges.peers()) } })
  const joinsTotal = new Counter({ name: 'rendezvous_joins_total', help: 'all joins since server started', registers })
  const joinsSuccess = new Counter({ name: 'rendezvous_joins_total_success', help: 'successfully completed joins since server started', registers })
  const joinsFailure = new Counter({ name: 'rendezvous_joins_total_failure', help: 'failed joins since server started', registers })
  const dialsTotal = new Counter({ name: 'rendezvous_dials_total', help: 'all dials since server started', registers })
  const dialsSuccess = new Counter({ name: 'rendezvous_dials_total_success', help: 'successfully completed dials since server started', registers })
  const dialsFailure = new Counter({ name: 'rendezvous_dials_total_failure', help: 'failed dials since server started', registers })

  const relayedBytes = new Counter({ name: 'rendezvous_relayed_bytes_total', help: 'bytes delivered through relayed streams', registers })
  new Gauge({ name: 'rendezvous_relayed_streams', help: 'relayed streams open now', registers, collect () { this.set(gauges.relayedStreams()) } })

  return {
    enabled: true,
    joinAttempt: () => { joinsTotal.inc() },
    joinSuccess: () => { joinsSuccess.inc() },
    joinFailure: () => { joinsFailure.inc() },
    dialAttempt: () => { dialsTotal.inc() },
    dialSuccess: () => { dialsSuccess.inc() },
    dialFailure: () => { dialsFailure.inc() },
    relayed: (bytes) => { relayedBytes.inc(bytes) },
    scrape: async () => ({ contentType: registry.contentType, body: await registry.metrics() })
  }
}
