/**
 * The server's parts, built once in dependency order: each gets what it needs
 * through its constructor. `start()` (index.ts) and the tests that need the
 * parts themselves build them here, so there is one wiring. `start` and `stop`
 * bring them up and down, the teardown order written once.
 */
import type { Registry as PromRegistry } from 'prom-client'
import debug from 'debug'
import { Admin } from './admin.js'
import { Certificates } from './certificates.js'
import { Challenges } from './challenge.js'
import { ClusterNode } from './cluster/node.js'
import { ClusterRouter } from './cluster/router.js'
import { RELAY_LOW_WATER_RATIO, SLOW_PEER_ANNOUNCE_BYTES, STOP_FLUSH_MS } from './constants.js'
import { Discovery } from './discovery.js'
import { ClientAddresses } from './client-addresses.js'
import { closeTransports, transportOf } from './engine.js'
import { Fanout } from './fanout.js'
import type { Server as HttpServer } from 'node:http'
import { createServer, secureContextSetter } from './http.js'
import { Joins } from './join.js'
import { Limits } from './limits.js'
import { createMetrics, type Metrics } from './metrics.js'
import { PeerPolicy } from './policy.js'
import type { Config } from './options.js'
import { renderPage, websocketStarAddress } from './page.js'
import { ERRORS, STARS, type PeerSocket, type SocketServer } from './protocol.js'
import { Registry } from './registry.js'
import { Relay } from './relay/index.js'
import { Signalling } from './signalling.js'
import { createSocketServer, originRefusal, wireSockets, type Handlers } from './socket.js'
import { VERSION } from './version.js'

const log = debug('rendezvous:server')

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

export interface PartsOptions {
  worker?: WorkerMode
  /** Tests only: stands in for the join handlers the sockets are wired to. */
  joinHandlers?: (joins: Joins) => Handlers['joins']
}

export class Parts {
  readonly registry = new Registry<PeerSocket>()
  readonly challenges: Challenges
  readonly metrics: Metrics
  readonly http: HttpServer
  readonly io: SocketServer
  readonly limits: Limits
  readonly discovery: Discovery
  readonly policy: PeerPolicy
  readonly joins: Joins
  readonly relay: Relay
  /** webrtc-star's offers and answers; undefined with `--disableWebrtcStar`. */
  readonly signalling: Signalling | undefined
  /** The operator's view, `/admin/…` (404 without `--adminToken`); in cluster mode it answers the other nodes too. */
  readonly admin: Admin
  /** HTTPS only: the key material, read again on SIGHUP and when its files change. */
  readonly certificates: Certificates | undefined
  /** Cluster mode only: this process as a node of the cluster. */
  readonly cluster: ClusterNode | undefined
  readonly startedAt = Date.now()
  private isDraining = false
  private stopped: Promise<void> | undefined

  constructor (readonly config: Config, private readonly options: PartsOptions = {}) {
    const { registry } = this
    this.challenges = new Challenges(config.challengeTimeoutMS, config.maxPendingChallenges)
    this.metrics = createMetrics(config.metrics, {
      stars: config.webrtcStar ? STARS : ['websocket-star'],
      peers: (star) => registry.sizeOf(star),
      connections: () => this.io.engine.clientsCount,
      joinedConnections: () => registry.connections,
      pendingChallenges: () => this.challenges.pending,
      relayedStreams: () => this.relay.streams,
      pausedSenders: () => this.relay.pausedSenders,
      refreshIntervalSeconds: () => this.discovery.effectiveIntervalMs / 1000,
      ...(config.redis !== undefined ? { cluster: { up: () => this.cluster?.up === true ? 1 : 0, nodes: () => this.cluster?.nodes ?? 0 } } : {})
    })
    this.http = createServer(config.tls, {
      page: (hostHeader, secure) => renderPage(websocketStarAddress(hostHeader, secure), this.figures()),
      metrics: this.metrics.enabled && options.worker?.scrape !== undefined ? options.worker.scrape : this.metrics.scrape,
      health: () => this.health(),
      admin: async (request) => await this.admin.handle(request)
    })
    const setSecureContext = secureContextSetter(this.http)
    this.certificates = config.tls !== undefined && setSecureContext !== undefined
      ? new Certificates(config.tls, config.tlsFiles ?? {}, setSecureContext)
      : undefined
    const addresses = new ClientAddresses(config.trustProxy, config.proxyHeader)
    this.io = createSocketServer(this.http, config, (req) => {
      if (this.isDraining) return ERRORS.SHUTTING_DOWN
      const origin = originRefusal(req, config)
      if (origin !== undefined) {
        log('handshake from %s refused: %s (Origin %s)', addresses.of(req), origin, req.headers.origin ?? 'none')
        this.metrics.refused('origin')
        return origin
      }
      return this.limits.refusal(req)
    })
    this.limits = new Limits(config, this.io, registry, addresses, this.metrics.connectionClosed)
    const cluster = config.redis === undefined
      ? undefined
      : new ClusterNode({ io: this.io, describe: () => ({ listeners: this.discovery.listenersOf('websocket-star'), webrtcListeners: this.discovery.listenersOf('webrtc-star'), peers: registry.size }), purged: this.metrics.purged, admin: (query) => this.admin.answer(query) }, { redis: config.redis, clusterNodeTimeoutMS: config.clusterNodeTimeoutMS })
    this.cluster = cluster
    this.discovery = new Discovery({
      announcer: new Fanout(this.io, SLOW_PEER_ANNOUNCE_BYTES),
      announced: this.metrics.announced,
      ...(cluster !== undefined ? { otherNodes: { listeners: (star) => cluster.up ? cluster.remoteListeners(star) : 0, announce: (addresses, fresh) => { cluster.announce(addresses, fresh) } } } : {})
    }, config)
    this.policy = new PeerPolicy(config.peerPolicy, () => { this.joins.applyPolicy() })
    this.joins = new Joins({
      registry,
      challenges: this.challenges,
      discovery: this.discovery,
      metrics: this.metrics,
      policy: this.policy,
      released: (socket, address) => {
        this.relay.addressReleased(socket, address)
        if (registry.addressesOf(socket.id) === undefined) this.limits.unjoined(socket)
      },
      ...(cluster !== undefined ? { shared: cluster } : {})
    }, config)
    this.relay = new Relay({
      registry,
      metrics: this.metrics,
      connection: (id) => this.io.sockets.sockets.get(id),
      ...(cluster !== undefined
        ? {
            nodes: {
              node: cluster.node,
              send: (node, message) => cluster.send(node, message),
              locate: async (address) => cluster.up ? await cluster.locate(address) : undefined,
              watch: (node) => { cluster.watch(node) }
            }
          }
        : {})
    }, { ...config, relayLowWaterBytes: Math.floor(config.relayHighWaterBytes * RELAY_LOW_WATER_RATIO) })
    this.signalling = config.webrtcStar
      ? new Signalling({
        registry,
        metrics: this.metrics,
        connection: (id) => this.io.sockets.sockets.get(id),
        ...(cluster !== undefined ? { nodes: { node: cluster.node, send: (node, message) => cluster.send(node, message), locate: async (address) => cluster.up ? await cluster.locate(address) : undefined } } : {})
      })
      : undefined
    this.admin = new Admin({
      registry,
      relayedBytesOf: (id) => this.relay.relayedBytesOf(id),
      clientAddressOf: (socket) => addresses.ofSocket(socket),
      transportOf,
      removePeer: (matches) => this.joins.removePeer(matches),
      metrics: this.metrics,
      ...(cluster !== undefined ? { cluster } : {})
    }, config.adminToken)
    if (cluster !== undefined) new ClusterRouter({ node: cluster, registry, joins: this.joins, relay: this.relay, discovery: this.discovery, signalling: this.signalling })
    const joins = options.joinHandlers?.(this.joins) ?? this.joins
    wireSockets(this.io, { joins, relay: this.relay, signalling: this.signalling, limits: this.limits, metrics: this.metrics, addresses })
  }

  /** Shutdown has begun: new connections and dials are refused, what runs may finish. */
  get draining (): boolean {
    return this.isDraining
  }

  drain (): void {
    this.isDraining = true
    this.relay.drain()
  }

  /**
   * SIGHUP: every part that reads files (certificates, the peer policy) reads
   * them again; a file that fails to load is logged and the old one kept.
   */
  async reload (): Promise<void> {
    log('reloading')
    this.policy.reload()
    await this.certificates?.reload()
  }

  /** Connects to Redis in cluster mode, then listens (or is attached to the primary of `--workers`). */
  async start (): Promise<void> {
    this.limits.start()
    this.policy.watch()
    this.certificates?.start()
    try {
      await this.cluster?.connect()
      const { worker } = this.options
      if (worker !== undefined) {
        worker.attach(this.io)
        if (this.metrics.registry !== undefined) worker.registry?.(this.metrics.registry)
      } else {
        await new Promise<void>((resolve, reject) => {
          this.http.once('error', reject)
          this.http.listen(this.config.port, this.config.host, () => {
            this.http.off('error', reject)
            resolve()
          })
        })
      }
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /**
   * Ends every relayed stream, closes every connection at the transport
   * level (clients reconnect by themselves), leaves the cluster, releases
   * the port and frees every timer. Once, however often it is called.
   */
  async stop (): Promise<void> {
    this.drain()
    this.stopped ??= (async () => {
      log('stopping')
      this.discovery.stop()
      this.relay.stop()
      // transport closes, after what is queued (the ends relay.stop() just
      // sent): clients reconnect, to this server restarted or to another node.
      // io.close() would discard the queue; a Socket.IO disconnect would
      // strand socket.io-client 2.x for good
      await closeTransports(this.io, STOP_FLUSH_MS)
      // the other nodes forget this one's peers now rather than after the timeout
      await this.cluster?.leave()
      // then closes the HTTP server
      const closed = this.io.close()
      this.http.closeAllConnections()
      await closed
      this.cluster?.disconnect()
      this.challenges.stop()
      this.limits.stop()
      this.policy.stop()
      this.certificates?.stop()
      log('stopped')
    })()
    await this.stopped
  }

  private figures (): Parameters<typeof renderPage>[1] {
    return {
      peers: this.registry.sizeOf('websocket-star'),
      ...(this.config.webrtcStar ? { webrtcStarPeers: this.registry.sizeOf('webrtc-star') } : {}),
      connections: this.io.engine.clientsCount,
      relayedStreams: this.relay.streams,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      version: VERSION
    }
  }

  private health (): { status: number, body: Record<string, unknown> } {
    const { cluster } = this
    return {
      // degraded still serves its own peers: a load balancer should keep it
      status: this.isDraining ? 503 : 200,
      body: {
        status: this.isDraining ? 'stopping' : cluster !== undefined && !cluster.up ? 'degraded' : 'ok',
        uptime: Math.floor((Date.now() - this.startedAt) / 1000),
        peers: this.registry.size,
        ...(cluster !== undefined ? { cluster: { node: cluster.node, redis: cluster.up ? 'up' : 'down', nodes: cluster.nodes } } : {})
      }
    }
  }
}
