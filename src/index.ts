/**
 * `start(options)`: wires the parts together and returns the server handle.
 */
import type { Registry as PromRegistry } from 'prom-client'
import type { AddressInfo } from 'node:net'
import debug from 'debug'
import { Challenges } from './challenge.js'
import { Cluster } from './cluster.js'
import { RELAY_LOW_WATER_RATIO, SLOW_PEER_ANNOUNCE_BYTES } from './constants.js'
import { Discovery } from './discovery.js'
import { Fanout } from './fanout.js'
import { closeTransports, engineClients } from './flow.js'
import { createServer } from './http.js'
import { Joins, TAKEN_OVER } from './join.js'
import { Limits } from './limits.js'
import { logError } from './log.js'
import { createMetrics } from './metrics.js'
import { resolveConfig, type Config, type Defaults, type Options } from './options.js'
import { renderPage, websocketStarAddress } from './page.js'
import { ERRORS, type PeerSocket, type RendezvousServer as SocketServer } from './protocol.js'
import { Registry } from './registry.js'
import { Relay } from './relay.js'
import { createSocketServer, wireSockets } from './socket.js'
import { VERSION } from './version.js'

export type { Options } from './options.js'
export { OptionError, CLI_DEFAULTS, LIBRARY_DEFAULTS, OPTION_SPECS } from './options.js'
export { ERRORS }

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
}

function formatUri (protocol: string, host: string, port: number): string {
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/**
 * How long stop() lets queued messages reach clients, and clients answer the
 * close, before it cuts their connections.
 */
const STOP_FLUSH_MS = 1000

function countListeners (io: SocketServer): number {
  let n = 0
  for (const socket of io.sockets.sockets.values()) {
    for (const event of socket.eventNames()) n += socket.listenerCount(event)
    n += socket.listenersAny().length
  }
  return n
}

/**
 * How a worker process of `--workers` differs (workers.ts): it does not
 * listen, the primary hands it connections; and its `/metrics` may show the
 * figures of all workers together.
 */
export interface WorkerMode {
  /** Called instead of listening, once the Socket.IO server exists. */
  attach: (io: SocketServer) => void
  /** Called with this server's metrics registry (when metrics are on). */
  registry?: (registry: PromRegistry) => void
  /** Serves `/metrics` instead of this server's own registry. */
  scrape?: () => Promise<{ contentType: string, body: string } | undefined>
}

export async function start (options: Options = {}, defaults?: Defaults, worker?: WorkerMode): Promise<RendezvousServer> {
  const config: Config = resolveConfig(options, defaults)
  const startedAt = Date.now()
  /** Shutdown has begun: refuse what is new, let what runs finish. */
  let draining = false

  const registry = new Registry<PeerSocket>()
  const challenges = new Challenges(config.challengeTimeoutMS, config.maxPendingChallenges)
  const metrics = createMetrics(config.metrics, {
    peers: () => registry.size,
    connections: () => io.engine.clientsCount,
    joinedConnections: () => registry.connections,
    pendingChallenges: () => challenges.pending,
    relayedStreams: () => relay.streams,
    pausedSenders: () => relay.pausedSenders,
    refreshIntervalSeconds: () => discovery.effectiveIntervalMs / 1000,
    ...(config.redis !== undefined ? { cluster: { up: () => cluster?.up === true ? 1 : 0, nodes: () => cluster?.nodes ?? 0 } } : {})
  })
  const relay = new Relay({
    ...config,
    relayLowWaterBytes: Math.floor(config.relayHighWaterBytes * RELAY_LOW_WATER_RATIO)
  }, registry, metrics, (id) => io.sockets.sockets.get(id))

  const http = createServer(config.tls, {
    page: (hostHeader, secure) => renderPage(websocketStarAddress(hostHeader, secure), {
      peers: registry.size,
      connections: io.engine.clientsCount,
      relayedStreams: relay.streams,
      uptimeSeconds: (Date.now() - startedAt) / 1000,
      version: VERSION
    }),
    metrics: metrics.enabled && worker?.scrape !== undefined ? worker.scrape : metrics.scrape,
    health: () => ({
      // degraded still serves its own peers: a load balancer should keep it
      status: draining ? 503 : 200,
      body: {
        status: draining ? 'stopping' : cluster !== undefined && !cluster.up ? 'degraded' : 'ok',
        uptime: Math.floor((Date.now() - startedAt) / 1000),
        peers: registry.size,
        ...(cluster !== undefined ? { cluster: { node: cluster.node, redis: cluster.up ? 'up' : 'down', nodes: cluster.nodes } } : {})
      }
    })
  })
  const io = createSocketServer(http, config, (req) => draining ? ERRORS.SHUTTING_DOWN : limits.refusal(req))
  const limits = new Limits(config, io, registry, metrics.connectionClosed)
  const cluster: Cluster | undefined = config.redis !== undefined
    ? new Cluster(io, { redis: config.redis, clusterNodeTimeoutMS: config.clusterNodeTimeoutMS }, () => ({ listeners: discovery.listeners, peers: registry.size }))
    : undefined
  const discovery: Discovery = new Discovery({
    announcer: new Fanout(io, SLOW_PEER_ANNOUNCE_BYTES),
    announced: metrics.announced,
    ...(cluster !== undefined ? { otherNodes: { listeners: () => cluster.up ? cluster.remoteListeners : 0, announce: (addresses, fresh) => { cluster.announce(addresses, fresh) } } } : {})
  }, config)
  const joins = new Joins(config, registry, challenges, discovery, metrics, (socket, address) => {
    relay.addressReleased(socket, address)
    if (registry.addressesOf(socket.id) === undefined) limits.unjoined(socket)
  })
  wireSockets(io, { joins, relay, limits, metrics })
  if (cluster !== undefined) joinCluster(cluster)

  function joinCluster (cluster: Cluster): void {
    cluster.onPurged = metrics.purged
    relay.cluster = {
      node: cluster.node,
      send: (node, message) => cluster.send(node, message),
      locate: async (address) => cluster.up ? await cluster.locate(address) : undefined,
      watch: (node) => { cluster.watch(node) }
    }
    joins.cluster = cluster
    const guard = (what: string, fn: () => void | Promise<void>): void => {
      const failed = (err: unknown): void => { logError('cluster: %s failed: %O', what, err) }
      try {
        void Promise.resolve(fn()).catch(failed)
      } catch (err) {
        failed(err)
      }
    }
    cluster.on('announced', (addresses, fresh) => {
      guard('announcement delivery', () => { discovery.deliver(addresses.map((address) => ({ address, ownerId: '' })), fresh) })
    })
    cluster.on('message', (from, message) => {
      guard(`message ${message.header.t}`, () => {
        const { t, address, sid } = message.header
        if (t === TAKEN_OVER) {
          if (typeof address === 'string' && typeof sid === 'string') joins.takenElsewhere(address, sid)
        } else relay.onNodeMessage(from, message)
      })
    })
    cluster.on('nodeGone', (node) => { guard('ending streams of a gone node', () => { relay.nodeGone(node) }) })
    // (re)connected: put this node's peers back in the shared registry
    cluster.on('up', () => {
      guard('re-registering peers', async () => {
        const lost = await cluster.register([...registry.entries()].map(([address, socket]) => [address, socket.id]))
        for (const [address, id] of lost) joins.takenElsewhere(address, id)
      })
    })
  }

  try {
    await cluster?.connect()
    if (worker !== undefined) {
      worker.attach(io)
      if (metrics.registry !== undefined) worker.registry?.(metrics.registry)
    } else await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(config.port, config.host, () => {
        http.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    discovery.stop()
    challenges.stop()
    limits.stop()
    await cluster?.leave()
    await io.close()
    cluster?.disconnect()
    throw err
  }

  const protocol = config.tls !== undefined ? 'https' : 'http'
  const port = worker !== undefined ? config.port : (http.address() as AddressInfo).port
  const info: ServerInfo = { port, host: config.host, uri: formatUri(protocol, config.host, port), protocol }
  log('listening on %s', info.uri)

  let stopped: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    if (stopped !== undefined) return await stopped
    draining = true
    stopped = (async () => {
      log('stopping')
      discovery.stop()
      relay.stop()
      // transport closes, after what is queued (the ends relay.stop() just
      // sent): clients reconnect, to this server restarted or to another node.
      // io.close() would discard the queue; a Socket.IO disconnect would
      // strand socket.io-client 2.x for good
      await closeTransports(engineClients(io), STOP_FLUSH_MS)
      // the other nodes forget this one's peers now rather than after the timeout
      await cluster?.leave()
      // then closes the HTTP server
      const closed = io.close()
      http.closeAllConnections()
      await closed
      cluster?.disconnect()
      challenges.stop()
      limits.stop()
      log('stopped')
    })()
    return await stopped
  }

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
    stop,
    shutdown: async (gracePeriodMS = config.shutdownGracePeriodMS) => {
      if (!draining) {
        draining = true
        relay.draining = true
        log('shutting down: %d relayed streams may finish within %d ms', relay.streams, gracePeriodMS)
      }
      if (relay.streams > 0 && gracePeriodMS > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, gracePeriodMS)
          relay.onIdle = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      await stop()
    }
  }
}
