/**
 * `start(options)`: wires the parts together and returns the server handle.
 */
import type { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import debug from 'debug'
import { Challenges } from './challenge.js'
import { RELAY_LOW_WATER_RATIO, SLOW_PEER_ANNOUNCE_BYTES } from './constants.js'
import { Discovery } from './discovery.js'
import { Fanout } from './fanout.js'
import { createServer } from './http.js'
import { Joins } from './join.js'
import { Limits } from './limits.js'
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
}

export interface RendezvousServer {
  info: ServerInfo
  /** Joined addresses, each with the id of the connection that holds it. */
  peers: () => Record<string, string>
  stats: () => ServerStats
  /** Disconnects every client, releases the port and frees every timer. */
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

/** How long stop() lets queued messages reach clients before it closes their connections. */
const STOP_FLUSH_MS = 1000

async function disconnectAll (io: SocketServer, patienceMs: number): Promise<void> {
  // Engine.IO keeps its open connections in a protected record
  const conns = Object.values((io.engine as unknown as { clients: Record<string, EventEmitter> }).clients)
  const closing = conns.map(async (conn) => await new Promise<void>((resolve) => { conn.once('close', () => { resolve() }) }))
  if (closing.length === 0) return
  io.disconnectSockets(true)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.all(closing), new Promise((resolve) => { timer = setTimeout(resolve, patienceMs) })])
  clearTimeout(timer)
}

function countListeners (io: SocketServer): number {
  let n = 0
  for (const socket of io.sockets.sockets.values()) {
    for (const event of socket.eventNames()) n += socket.listenerCount(event)
    n += socket.listenersAny().length
  }
  return n
}

export async function start (options: Options = {}, defaults?: Defaults): Promise<RendezvousServer> {
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
    refreshIntervalSeconds: () => discovery.effectiveIntervalMs / 1000
  })
  const relay = new Relay({
    ...config,
    relayLowWaterBytes: Math.floor(config.relayHighWaterBytes * RELAY_LOW_WATER_RATIO)
  }, registry, metrics)

  const http = createServer(config.tls, {
    page: (hostHeader, secure) => renderPage(websocketStarAddress(hostHeader, secure), {
      peers: registry.size,
      connections: io.engine.clientsCount,
      relayedStreams: relay.streams,
      uptimeSeconds: (Date.now() - startedAt) / 1000,
      version: VERSION
    }),
    metrics: metrics.scrape,
    health: () => ({
      status: draining ? 503 : 200,
      body: { status: draining ? 'stopping' : 'ok', uptime: Math.floor((Date.now() - startedAt) / 1000), peers: registry.size }
    })
  })
  const io = createSocketServer(http, config, (req) => draining ? ERRORS.SHUTTING_DOWN : limits.refusal(req))
  const limits = new Limits(config, io, registry, metrics.connectionClosed)
  const discovery = new Discovery(io, config, new Fanout(io, SLOW_PEER_ANNOUNCE_BYTES), metrics.announced)
  const joins = new Joins(config, registry, challenges, discovery, metrics, (socket, address) => {
    relay.addressReleased(socket, address)
    if (registry.addressesOf(socket.id) === undefined) limits.unjoined(socket)
  })
  wireSockets(io, { joins, relay, limits, metrics })

  try {
    await new Promise<void>((resolve, reject) => {
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
    await io.close()
    throw err
  }

  const protocol = config.tls !== undefined ? 'https' : 'http'
  const port = (http.address() as AddressInfo).port
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
      // a graceful disconnect flushes what is queued (the ends relay.stop()
      // just sent) before the transport closes; io.close() would discard it
      await disconnectAll(io, STOP_FLUSH_MS)
      // then closes the HTTP server
      const closed = io.close()
      http.closeAllConnections()
      await closed
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
      socketListeners: countListeners(io)
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
