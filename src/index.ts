/**
 * `start(options)`: wires the parts together and returns the server handle.
 */
import type { AddressInfo } from 'node:net'
import debug from 'debug'
import { resolveConfig, type Defaults, type Options } from './options.js'
import { Parts, type WorkerMode } from './parts.js'
import { ERRORS } from './protocol.js'
import { countListeners } from './socket.js'

export type { Options } from './options.js'
export { OptionError, CLI_DEFAULTS, LIBRARY_DEFAULTS, OPTION_SPECS } from './options.js'
export { ERRORS }
export type { WorkerMode } from './parts.js'

const log = debug('rendezvous:server')

export interface ServerInfo {
  port: number
  host: string
  /** e.g. `http://127.0.0.1:9090` */
  uri: string
  protocol: 'http' | 'https'
}

/** Sizes of the server's internal tables, for tests and leak checks. */
export interface ServerStats {
  peers: number
  connections: number
  joinedConnections: number
  pendingChallenges: number
  challengeConnections: number
  announcedAddresses: number
  announcementsSent: number
  /** The refresh interval in force, stretched by the announcement budget. */
  refreshIntervalMS: number
  relayedStreams: number
  dials: number
  relayConnections: number
  relayedBytes: number
  pausedSenders: number
  /** Connections tracked by the limits, and remote addresses counted. */
  limitedConnections: number
  remoteAddresses: number
  /** Event listeners on all sockets together: flat however many dials run. */
  socketListeners: number
  /** Cluster mode: whether Redis is reachable, and the nodes alive. */
  cluster?: { node: string, up: boolean, nodes: number }
}

export interface RendezvousServer {
  info: ServerInfo
  /** Joined addresses, each with the id of the connection that holds it. */
  peers: () => Record<string, string>
  stats: () => ServerStats
  /**
   * Closes every connection at the transport level (clients reconnect by
   * themselves), releases the port and frees every timer.
   */
  stop: () => Promise<void>
  /**
   * Graceful stop: `/health` answers 503 and new connections and dials are
   * refused at once; relayed streams in flight may finish for up to
   * `gracePeriodMS` (the `shutdownGracePeriodMS` option by default), then the
   * rest are ended and the server stops.
   */
  shutdown: (gracePeriodMS?: number) => Promise<void>
  /** Reads the files it serves from again (SIGHUP); a bad file is logged and the old one kept. */
  reload: () => Promise<void>
}

function formatUri (protocol: string, host: string, port: number): string {
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`
}

export async function start (options: Options = {}, defaults?: Defaults, worker?: WorkerMode): Promise<RendezvousServer> {
  const config = resolveConfig(options, defaults)
  const parts = new Parts(config, worker !== undefined ? { worker } : {})
  await parts.start()
  const { registry, challenges, io, relay, discovery, limits, cluster } = parts

  const protocol = config.tls !== undefined ? 'https' : 'http'
  const port = worker !== undefined ? config.port : (parts.http.address() as AddressInfo).port
  const info: ServerInfo = { port, host: config.host, uri: formatUri(protocol, config.host, port), protocol }
  log('listening on %s', info.uri)

  return {
    info,
    peers: () => {
      const peers: Record<string, string> = {}
      for (const [address, socket] of registry.entries()) peers[address] = socket.id
      return peers
    },
    stats: () => ({
      peers: registry.size,
      connections: io.engine.clientsCount,
      joinedConnections: registry.connections,
      pendingChallenges: challenges.pending,
      challengeConnections: challenges.connections,
      announcedAddresses: discovery.size,
      announcementsSent: discovery.sent,
      refreshIntervalMS: discovery.effectiveIntervalMs,
      relayedStreams: relay.streams,
      dials: relay.dials,
      relayConnections: relay.connections,
      relayedBytes: relay.bytesRelayed,
      pausedSenders: relay.pausedSenders,
      limitedConnections: limits.connections,
      remoteAddresses: limits.addresses,
      socketListeners: countListeners(io),
      ...(cluster !== undefined ? { cluster: { node: cluster.node, up: cluster.up, nodes: cluster.nodes } } : {})
    }),
    stop: async () => { await parts.stop() },
    reload: async () => { await parts.reload() },
    shutdown: async (gracePeriodMS = config.shutdownGracePeriodMS) => {
      if (!parts.draining) {
        parts.drain()
        log('shutting down: %d relayed streams may finish within %d ms', relay.streams, gracePeriodMS)
      }
      await relay.whenIdle(gracePeriodMS)
      await parts.stop()
    }
  }
}
