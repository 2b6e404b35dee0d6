/**
 * Cluster mode: several server processes, one rendezvous network, over Redis.
 *
 * - Events between processes go through the official Socket.IO Redis adapter
 *   in its sharded mode (Redis 7 `SPUBLISH`/`SSUBSCRIBE`): discovery batches
 *   are `serverSideEmit`ted to every node. Messages meant for one node (an
 *   address taken over, a dial and its streams) go on that node's own sharded
 *   channel, through the same Redis connection, so they keep their order.
 * - The registry of who holds which address lives in a Redis hash, changed
 *   only by the Lua scripts below so that each change is atomic.
 * - Each node refreshes a key that expires after `clusterNodeTimeoutMS`; every
 *   node checks the others' keys and purges the addresses of a node whose key
 *   has expired, so a node killed without cleaning up disappears within the
 *   timeout plus one check (a third of it).
 * - While Redis is unreachable nothing is queued: commands fail at once
 *   (`enableOfflineQueue: false`), the node serves its own peers alone,
 *   reports itself degraded, and re-registers its peers once Redis is back.
 *
 * The registry keys are not hashed into one slot, so this needs a standalone
 * Redis (or a primary with replicas), not a Redis Cluster.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import debug from 'debug'
import { Redis } from 'ioredis'
import { createShardedAdapter } from '@socket.io/redis-adapter'
import { CLUSTER_CONNECT_PATIENCE_MS, CLUSTER_HEARTBEAT_MIN_MS, CLUSTER_RECONNECT_BASE_DELAY_MS, CLUSTER_RECONNECT_MAX_DELAY_MS } from '../constants.js'
import { errorMessage, logError } from '../log.js'
import type { SocketServer, Star } from '../protocol.js'
import { decodeMessage, encodeMessage, type Broadcast, type NodeMessage } from './messages.js'
import { CHANNEL_PREFIX, NODES_KEY, NODE_KEY_PREFIX, PEERS_KEY, defineScripts, holderValue, nodeChannel, nodeKey, nodePeersKey, parseHolder, type ScriptedRedis } from './registry-scripts.js'
import type { Holder } from './remote-listener.js'

const log = debug('rendezvous:cluster')

/** The Socket.IO event that carries broadcasts between nodes (through the adapter's `serverSideEmit`). */
const BROADCAST_EVENT = 'rendezvous:node'
/** The Socket.IO event that carries the admin view's queries, answered by every other node. */
const ADMIN_EVENT = 'rendezvous:admin'

export interface ClusterConfig {
  redis: string
  clusterNodeTimeoutMS: number
}

/** What the node tells the cluster about itself with each heartbeat. */
interface NodeInfo {
  /** Connections that hear websocket-star announcements... */
  listeners: number
  /** ...and webrtc-star ones (0 from a node of a version before it). */
  webrtcListeners: number
  peers: number
}

export interface ClusterEvents {
  /** A message from another node, checked (messages.ts); a node leaving is handled here. */
  message: [from: string, message: Exclude<NodeMessage, { t: 'gone' }>]
  /** A node stopped or was found dead: whatever this node shares with it ends. */
  nodeGone: [node: string]
  /** Redis is reachable again (or for the first time): re-register the local peers. */
  up: []
}

export interface ClusterComponents {
  io: SocketServer
  /** What the node tells the others with each heartbeat. */
  describe: () => NodeInfo
  /** Told how many addresses of a dead node this node purged. */
  purged?: (addresses: number) => void
  /** This node's answer to another node's admin query (admin.ts checks it). */
  admin?: (query: unknown) => unknown
}

/** This process as one node of the cluster: its link to Redis and to the other nodes. */
export class ClusterNode extends EventEmitter<ClusterEvents> {
  /** This process's id in the cluster, fresh at every start. */
  readonly node = randomBytes(8).toString('hex')
  private readonly commands: ScriptedRedis
  private readonly subscriber: Redis
  private heartbeat: NodeJS.Timeout | undefined
  private connected = false
  private closed = false
  /** Nodes whose key was alive at the last check, with what they said. */
  private readonly alive = new Map<string, NodeInfo>()
  private readonly io: SocketServer
  private readonly describe: () => NodeInfo
  private readonly purged: (addresses: number) => void
  private readonly admin: (query: unknown) => unknown

  constructor (components: ClusterComponents, private readonly config: ClusterConfig) {
    super()
    this.io = components.io
    this.describe = components.describe
    this.purged = components.purged ?? (() => {})
    this.admin = components.admin ?? (() => null)
    const retryStrategy = (attempt: number): number => Math.min(CLUSTER_RECONNECT_MAX_DELAY_MS, CLUSTER_RECONNECT_BASE_DELAY_MS * 2 ** Math.min(attempt, 6))
    this.commands = defineScripts(new Redis(config.redis, {
      lazyConnect: true,
      // nothing piles up while Redis is away: commands fail at once
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy
    }))
    // the subscriber only ever queues its few subscriptions
    this.subscriber = new Redis(config.redis, { lazyConnect: true, retryStrategy })
    for (const client of [this.commands, this.subscriber]) {
      // ioredis retries by itself; an error event only needs a log line
      client.on('error', (err: Error) => { log('redis: %s', err.message) })
    }
    this.commands.on('ready', () => { this.becameReachable() })
    this.commands.on('close', () => { this.becameUnreachable() })
  }

  /** Whether Redis is reachable: cross-node discovery, dials and the shared registry work. */
  get up (): boolean {
    return this.connected
  }

  /** Nodes seen alive at the last check, this one included. */
  get nodes (): number {
    return this.alive.size + 1
  }

  /** Connections hearing announcements of `star` on the other nodes, as they last said. */
  remoteListeners (star: Star): number {
    let n = 0
    for (const info of this.alive.values()) n += star === 'webrtc-star' ? info.webrtcListeners : info.listeners
    return n
  }

  /**
   * Connects to Redis and installs the adapter. Resolves once Redis answered
   * or after a few seconds without it: the node then starts alone, degraded,
   * and joins the cluster when Redis comes.
   */
  async connect (): Promise<void> {
    this.subscriber.on('smessageBuffer', (channel: Buffer, raw: Buffer) => {
      if (channel.toString() === nodeChannel(this.node)) this.received(raw)
    })
    void this.subscriber.ssubscribe(nodeChannel(this.node)).catch((err: unknown) => { log('subscribe: %s', errorMessage(err)) })
    // static: the adapter subscribes once, so nothing is subscribed while Redis may be away
    this.io.adapter(createShardedAdapter(this.commands, quietSubscriptions(this.subscriber), { channelPrefix: CHANNEL_PREFIX, subscriptionMode: 'static' }))
    this.io.on(BROADCAST_EVENT, (raw: unknown) => {
      if (Buffer.isBuffer(raw)) this.received(raw)
      else log('unreadable broadcast from another node')
    })
    this.io.on(ADMIN_EVENT, (query: unknown, reply: unknown) => {
      if (typeof reply === 'function') (reply as (answer: unknown) => void)(this.admin(query))
    })
    this.subscriber.connect().catch(() => {})
    const ready = new Promise<void>((resolve) => { this.commands.once('ready', () => { resolve() }) })
    this.commands.connect().catch(() => {})
    let timer: NodeJS.Timeout | undefined
    await Promise.race([ready, new Promise<void>((resolve) => { timer = setTimeout(resolve, CLUSTER_CONNECT_PATIENCE_MS) })])
    clearTimeout(timer)
    if (!this.connected) logError('cluster: Redis at %s is not reachable; serving local peers alone until it is', this.config.redis)
    const period = Math.max(CLUSTER_HEARTBEAT_MIN_MS, Math.floor(this.config.clusterNodeTimeoutMS / 3))
    this.heartbeat = setInterval(() => { void this.beat() }, period)
  }

  /** Announces addresses held here to the peers of every other node; the first `fresh` are new joins. */
  announce (addresses: string[], fresh: number): void {
    if (!this.connected || addresses.length === 0) return
    this.broadcast({ t: 'announce', addresses, fresh })
  }

  /** Sends a message to one node; false when Redis is away (the message is lost). */
  send (node: string, message: Exclude<NodeMessage, Broadcast>): boolean {
    if (!this.connected) return false
    this.commands.spublish(nodeChannel(node), encodeMessage(this.node, message)).catch((err: unknown) => {
      log('message to node %s lost: %s', node, errorMessage(err))
    })
    return true
  }

  /**
   * Gives `address` to `connection` here; resolves with the previous holder
   * if it was on another node (which must be told), or undefined.
   */
  async claim (address: string, connection: string): Promise<Holder | undefined> {
    const previous = await this.commands.rdvClaim(PEERS_KEY, nodePeersKey(this.node), address, this.holder(connection), this.node, NODE_KEY_PREFIX)
    const holder = parseHolder(previous)
    return holder !== undefined && holder.node !== this.node ? holder : undefined
  }

  /** Frees `address` if `connection` here still holds it; never throws. */
  release (address: string, connection: string): void {
    if (!this.connected) return
    this.commands.rdvRelease(PEERS_KEY, nodePeersKey(this.node), address, this.holder(connection)).catch((err: unknown) => {
      log('release of %s failed: %s', address, errorMessage(err))
    })
  }

  /** How the registry names a connection of this node (`parseHolder` reads it back). */
  private holder (connection: string): string {
    return holderValue(this.node, connection)
  }

  /** Who holds `address`, on any node. */
  async locate (address: string): Promise<Holder | undefined> {
    return parseHolder(await this.commands.hget(PEERS_KEY, address))
  }

  /** Up to `count` addresses held anywhere other than `except`, at random when there are more. */
  async sample (count: number, except: string): Promise<string[]> {
    const fields = await this.commands.hrandfield(PEERS_KEY, count + 1) as string[]
    const others = fields.filter((a) => a !== except)
    return others.slice(0, count)
  }

  /**
   * Registers local holders again after an outage. Resolves with those that
   * another live node took meanwhile: they are no longer held here.
   */
  async register (holders: Array<[address: string, connection: string]>): Promise<Array<[string, string]>> {
    const lost: Array<[string, string]> = []
    const pipeline = this.commands.pipeline()
    for (const [address, connection] of holders) {
      void (pipeline as unknown as ScriptedRedis).rdvRegister(PEERS_KEY, nodePeersKey(this.node), address, this.holder(connection), this.node, NODE_KEY_PREFIX)
    }
    const results = await pipeline.exec() ?? []
    results.forEach(([err, taken], i) => {
      if (err === null && typeof taken === 'string') lost.push(holders[i])
    })
    return lost
  }

  /** Leaves the cluster: this node's addresses and keys are removed at once rather than after the timeout. */
  async leave (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.heartbeat)
    if (this.connected) {
      try {
        await this.commands.rdvPurge(PEERS_KEY, nodePeersKey(this.node), NODES_KEY, this.node)
        await this.commands.del(nodeKey(this.node))
        this.broadcast({ t: 'gone', node: this.node })
      } catch (err) {
        log('leaving the cluster: %s', errorMessage(err))
      }
    }
    this.io.removeAllListeners(BROADCAST_EVENT)
    this.io.removeAllListeners(ADMIN_EVENT)
  }

  /**
   * Every other node's answer to an admin query (unchecked: admin.ts checks
   * them), and whether all answered; the adapter waits for them up to 5 s.
   */
  async ask (query: unknown): Promise<{ answers: unknown[], complete: boolean }> {
    if (!this.connected) return { answers: [], complete: this.alive.size === 0 }
    return await new Promise((resolve) => {
      const answered = (err: Error | null, answers: unknown): void => {
        resolve({ answers: Array.isArray(answers) ? answers : [], complete: err === null })
      }
      // the adapter's own method, whose promise says when Redis failed (the server's would leave it unhandled);
      // the sharded Redis adapter is a ClusterAdapter, whose serverSideEmit returns that promise
      const adapter = this.io.of('/').adapter as unknown as { serverSideEmit: (packet: unknown[]) => Promise<unknown> }
      adapter.serverSideEmit([ADMIN_EVENT, query, answered]).catch((err: unknown) => {
        log('admin query: %s', errorMessage(err))
        resolve({ answers: [], complete: false })
      })
    })
  }

  /** Closes the Redis connections; after `leave` and after the adapter is closed (`io.close()`). */
  disconnect (): void {
    this.connected = false
    this.commands.disconnect()
    this.subscriber.disconnect()
    this.removeAllListeners()
  }

  /** A message from another node: checked once here, then handed on (a node leaving is handled here). */
  private received (raw: Buffer): void {
    const decoded = decodeMessage(raw)
    if ('error' in decoded) return log('refused a message from another node (%d bytes): %s', raw.length, decoded.error)
    const { from, message } = decoded
    if (message.t === 'gone') this.lost(message.node)
    else this.emit('message', from, message)
  }

  private broadcast (message: Broadcast): void {
    this.io.serverSideEmit(BROADCAST_EVENT, encodeMessage(this.node, message))
  }

  private becameReachable (): void {
    if (this.closed || this.connected) return
    this.connected = true
    log('node %s: Redis reachable', this.node)
    void this.beat().then(() => { this.emit('up') })
  }

  private becameUnreachable (): void {
    if (!this.connected) return
    this.connected = false
    logError('cluster: lost Redis at %s; serving local peers alone, reconnecting', this.config.redis)
    // every node out of reach: what is shared with them cannot go on
    const nodes = [...this.alive.keys()]
    this.alive.clear()
    for (const node of nodes) this.emit('nodeGone', node)
  }

  /** Refreshes this node's key, then looks for nodes whose key has expired. */
  private async beat (): Promise<void> {
    if (!this.connected) return
    try {
      await this.commands.multi()
        .set(nodeKey(this.node), JSON.stringify(this.describe()), 'PX', this.config.clusterNodeTimeoutMS)
        .sadd(NODES_KEY, this.node)
        .exec()
      const nodes = (await this.commands.smembers(NODES_KEY)).filter((n) => n !== this.node)
      const infos = nodes.length > 0 ? await this.commands.mget(...nodes.map(nodeKey)) : []
      for (const [i, node] of nodes.entries()) {
        const info = infos[i]
        if (typeof info === 'string') {
          this.alive.set(node, parseInfo(info))
          continue
        }
        const removed = await this.commands.rdvPurge(PEERS_KEY, nodePeersKey(node), NODES_KEY, node)
        if (removed > 0) log('node %s is gone: purged %d addresses', node, removed)
        this.purged(removed)
        this.lost(node)
      }
      // a node that left and was purged by another node
      for (const node of [...this.alive.keys()]) if (!nodes.includes(node)) this.lost(node)
    } catch (err) {
      log('heartbeat: %s', errorMessage(err))
    }
  }

  /**
   * Something here now depends on `node` (a dial to one of its peers): watch
   * it, so that its death is noticed even if no heartbeat has seen it yet.
   */
  watch (node: string): void {
    if (!this.alive.has(node)) this.alive.set(node, { listeners: 0, webrtcListeners: 0, peers: 0 })
  }

  private lost (node: string): void {
    if (!this.alive.delete(node)) return
    log('node %s left the cluster', node)
    this.emit('nodeGone', node)
  }
}

/**
 * The adapter drops the promises of its (un)subscriptions: one that fails
 * while Redis is away must be a log line, not an unhandled rejection.
 */
function quietSubscriptions (client: Redis): Redis {
  return new Proxy(client, {
    get (target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      if (property !== 'ssubscribe' && property !== 'sunsubscribe') return method.bind(target)
      return (...args: unknown[]) => (method.apply(target, args) as Promise<unknown>).catch((err: unknown) => {
        log('%s: %s', property, errorMessage(err))
      })
    }
  })
}

function parseInfo (raw: string): NodeInfo {
  try {
    const info = JSON.parse(raw) as Partial<NodeInfo>
    return { listeners: Number(info.listeners) || 0, webrtcListeners: Number(info.webrtcListeners) || 0, peers: Number(info.peers) || 0 }
  } catch {
    return { listeners: 0, webrtcListeners: 0, peers: 0 }
  }
}
