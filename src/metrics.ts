/**
 * Prometheus metrics. Each server has its own registry, so several servers in
 * one process (tests start many) never collide on metric names. When metrics
 * are off, every method is a no-op and nothing is registered.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Star } from './protocol.js'

/** Figures read at scrape time rather than counted on the hot path. */
export interface Gauges {
  /** The transports served: each has its series of the metrics labelled `transport`. */
  stars: readonly Star[]
  peers: (star: Star) => number
  connections: () => number
  joinedConnections: () => number
  pendingChallenges: () => number
  relayedStreams: () => number
  pausedSenders: () => number
  refreshIntervalSeconds: () => number
  /** Cluster mode only. */
  cluster?: {
    /** 1 while Redis is reachable, 0 while the node serves alone (degraded). */
    up: () => number
    nodes: () => number
  }
}

export type JoinResult = 'success' | 'failure' | 'challenge'

/** What became of a webrtc-star `ss-handshake`: passed on, answered `peer is not available`, or refused (bad, unauthorized or too many). */
export type SignalResult = 'relayed' | 'unavailable' | 'refused'

export interface Metrics {
  readonly enabled: boolean
  /** The registry, when metrics are on. */
  readonly registry?: Registry
  /** An `ss-join` that starts a join (a signature finishes the one its key started). */
  joinAttempt: (star: Star) => void
  /** An `ss-join` was answered; `startedAt` is `process.hrtime.bigint()` at its arrival. */
  joinAnswered: (result: JoinResult, startedAt: bigint, star: Star) => void
  /** A webrtc-star `ss-handshake`, by what became of it. */
  signalled: (result: SignalResult) => void
  dialAttempt: () => void
  dialAnswered: (success: boolean, startedAt: bigint) => void
  /** Bytes delivered to a relay's receiver. */
  relayed: (bytes: number) => void
  /** `ws-peer` messages delivered by one batch, and those skipped for peers not reading. */
  announced: (deliveries: number, dropped: number) => void
  /** A socket event handler threw. */
  handlerError: (event: string) => void
  /** The server closed a connection that broke a limit. */
  connectionClosed: (reason: string) => void
  /** A connection, join or request refused by a policy (origin, peer policy, proxy rules...), by reason. */
  refused: (reason: string) => void
  /** Cluster mode: addresses of dead nodes removed from the shared registry. */
  purged: (addresses: number) => void
  /** Prometheus text exposition, or undefined when metrics are off. */
  scrape: () => Promise<{ contentType: string, body: string } | undefined>
}

const noop = (): void => {}

const disabled: Metrics = {
  enabled: false,
  joinAttempt: noop,
  joinAnswered: noop,
  dialAttempt: noop,
  dialAnswered: noop,
  signalled: noop,
  relayed: noop,
  announced: noop,
  handlerError: noop,
  connectionClosed: noop,
  refused: noop,
  purged: noop,
  scrape: () => Promise.resolve(undefined)
}

/** From half a millisecond (a plain join) to 30 s (a dial the listener never answers). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

function secondsSince (startedAt: bigint): number {
  return Number(process.hrtime.bigint() - startedAt) / 1e9
}

/** The figures read at scrape time; each gauge registers itself. */
function registerGauges (registers: Registry[], gauges: Gauges): void {
  /** `aggregator`: how `--workers` combines the workers' values (prom-client sums them by default). */
  const gauge = (name: string, help: string, read: () => number, aggregator?: 'min' | 'max'): void => {
    new Gauge({ name, help, registers, collect () { this.set(read()) }, ...(aggregator !== undefined ? { aggregator } : {}) })
  }
  // the old server's name, kept as it was, with one series per transport: sum() gives the old figure
  new Gauge({
    name: 'rendezvous_peers',
    help: 'joined addresses now, by transport',
    labelNames: ['transport'],
    registers,
    collect () { for (const transport of gauges.stars) this.set({ transport }, gauges.peers(transport)) }
  })
  gauge('rendezvous_connections', 'Socket.IO connections open now, joined or not', gauges.connections)
  gauge('rendezvous_joined_connections', 'connections holding at least one address', gauges.joinedConnections)
  gauge('rendezvous_crypto_challenges_pending', 'crypto challenges waiting for their signature', gauges.pendingChallenges)
  gauge('rendezvous_relayed_streams', 'relayed streams open now', gauges.relayedStreams)
  gauge('rendezvous_relay_paused_senders', 'connections not read from now, held back by a slow receiver', gauges.pausedSenders)
  gauge('rendezvous_discovery_refresh_interval_seconds', 'refresh interval in force: the configured one, stretched by the announcement budget', gauges.refreshIntervalSeconds, 'max')
  if (gauges.cluster !== undefined) {
    gauge('rendezvous_cluster_up', 'cluster mode: 1 while Redis is reachable, 0 while this node serves its own peers alone (degraded)', gauges.cluster.up, 'min')
    gauge('rendezvous_cluster_nodes', 'cluster mode: nodes alive at the last heartbeat check, this one included', gauges.cluster.nodes, 'max')
  }
}

export function createMetrics (enabled: boolean, gauges: Gauges): Metrics {
  if (!enabled) return disabled
  const registry = new Registry()
  const registers = [registry]
  // includes nodejs_eventloop_lag_seconds and its percentiles
  collectDefaultMetrics({ register: registry })

  registerGauges(registers, gauges)
  // The old server's names, kept as they were: dashboards already use them.
  // each with one series per transport: sum() gives the old figure
  const byTransport = { labelNames: ['transport'], registers }
  const joinsTotal = new Counter({ name: 'rendezvous_joins_total', help: 'joins attempted since the server started, by transport', ...byTransport })
  const joinsSuccess = new Counter({ name: 'rendezvous_joins_total_success', help: 'joins completed since the server started, by transport', ...byTransport })
  const joinsFailure = new Counter({ name: 'rendezvous_joins_total_failure', help: 'joins refused since the server started, by transport', ...byTransport })
  for (const transport of gauges.stars) for (const counter of [joinsTotal, joinsSuccess, joinsFailure]) counter.inc({ transport }, 0)
  const signals = new Counter({ name: 'rendezvous_webrtc_star_signals_total', help: 'webrtc-star ss-handshake messages, by result (relayed; unavailable: no such webrtc-star peer; refused: bad, unauthorized or too many)', labelNames: ['result'], registers })
  const dialsTotal = new Counter({ name: 'rendezvous_dials_total', help: 'dials attempted since the server started', registers })
  const dialsSuccess = new Counter({ name: 'rendezvous_dials_total_success', help: 'dials the listener accepted since the server started', registers })
  const dialsFailure = new Counter({ name: 'rendezvous_dials_total_failure', help: 'dials refused, timed out or abandoned since the server started', registers })

  // counted per chunk in a number, and added to the counter (which the registry keeps) when it is read
  let unreportedRelayedBytes = 0
  new Counter({
    name: 'rendezvous_relayed_bytes_total',
    help: 'bytes delivered through relayed streams',
    registers,
    collect () {
      this.inc(unreportedRelayedBytes)
      unreportedRelayedBytes = 0
    }
  })
  const announcements = new Counter({ name: 'rendezvous_discovery_announcements_total', help: 'ws-peer messages delivered to peers (rate() gives announcements per second)', registers })
  const dropped = new Counter({ name: 'rendezvous_discovery_announcements_dropped_total', help: 'ws-peer messages skipped because the peer was not reading', registers })
  const joinDuration = new Histogram({ name: 'rendezvous_join_duration_seconds', help: 'time from an ss-join to its answer, by result (challenge: a nonce was sent) and transport', labelNames: ['result', 'transport'], buckets: DURATION_BUCKETS, registers })
  const dialDuration = new Histogram({ name: 'rendezvous_dial_duration_seconds', help: 'time from an ss-dial to its answer, which waits for the listener', labelNames: ['result'], buckets: DURATION_BUCKETS, registers })
  const closedByLimit = new Counter({ name: 'rendezvous_connections_closed_total', help: 'connections the server closed for breaking a limit, by reason', labelNames: ['reason'], registers })
  const refusals = new Counter({ name: 'rendezvous_refusals_total', help: 'connections, joins and requests refused by a policy, by reason', labelNames: ['reason'], registers })
  const handlerErrors = new Counter({ name: 'rendezvous_handler_errors_total', help: 'socket events whose handler threw, by event', labelNames: ['event'], registers })
  let purged: Counter | undefined
  if (gauges.cluster !== undefined) {
    purged = new Counter({ name: 'rendezvous_cluster_purged_addresses_total', help: 'cluster mode: addresses of dead nodes this node removed from the shared registry', registers })
  }

  return {
    enabled: true,
    registry,
    joinAttempt: (transport) => { joinsTotal.inc({ transport }) },
    joinAnswered: (result, startedAt, transport) => {
      if (result === 'success') joinsSuccess.inc({ transport })
      else if (result === 'failure') joinsFailure.inc({ transport })
      joinDuration.observe({ result, transport }, secondsSince(startedAt))
    },
    signalled: (result) => { signals.inc({ result }) },
    dialAttempt: () => { dialsTotal.inc() },
    dialAnswered: (success, startedAt) => {
      if (success) dialsSuccess.inc()
      else dialsFailure.inc()
      dialDuration.observe({ result: success ? 'success' : 'failure' }, secondsSince(startedAt))
    },
    relayed: (bytes) => { unreportedRelayedBytes += bytes },
    announced: (deliveries, skipped) => {
      announcements.inc(deliveries)
      if (skipped > 0) dropped.inc(skipped)
    },
    // stream event names carry dial ids: label them by kind only
    handlerError: (event) => { handlerErrors.inc({ event: event.startsWith('socket.io-pull-stream.') ? 'socket.io-pull-stream' : event }) },
    connectionClosed: (reason) => { closedByLimit.inc({ reason }) },
    refused: (reason) => { refusals.inc({ reason }) },
    purged: (addresses) => { purged?.inc(addresses) },
    scrape: async () => ({ contentType: registry.contentType, body: await registry.metrics() })
  }
}
