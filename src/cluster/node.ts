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
import { logError } from './log.js'
import type { RendezvousServer } from './protocol.js'

const log = debug('rendezvous:cluster')

const PREFIX = 'rendezvous'
const PEERS_KEY = `${PREFIX}:peers`
const NODES_KEY = `${PREFIX}:nodes`
/** A node's heartbeat key is this prefix and its id; the Lua scripts build it the same way. */
const NODE_KEY_PREFIX = `${PREFIX}:node:`
const nodeKey = (node: string): string => `${NODE_KEY_PREFIX}${node}`
const nodePeersKey = (node: string): string => `${NODE_KEY_PREFIX}${node}:peers`
const nodeChannel = (node: string): string => `${PREFIX}#node#${node}#`

/** Longest wait between two reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 5000
/** How long `connect` waits for Redis before the node starts alone (degraded). */
const CONNECT_PATIENCE_MS = 5000

/** Where an address is held: the node and the connection there. */
export interface Holder {
  node: string
  connection: string
}

/** A message for one node: a small JSON header and, for relayed data, the bytes. */
export interface NodeMessage {
  header: Record<string, unknown> & { t: string }
  payload?: Buffer
}

export interface ClusterConfig {
  redis: string
  clusterNodeTimeoutMS: number
}

/** What the node tells the cluster about itself with each heartbeat. */
interface NodeInfo {
  /** Connections that hear announcements. */
  listeners: number
  peers: number
}

export interface ClusterEvents {
  /** Addresses announced by another node, to be delivered to this node's peers. */
  announced: [addresses: string[], fresh: number]
  /** A message from another node. */
  message: [from: string, message: NodeMessage]
  /** A node stopped or was found dead: whatever this node shares with it ends. */
  nodeGone: [node: string]
  /** Redis is reachable again (or for the first time): re-register the local peers. */
  up: []
  /** Redis is unreachable: cross-node state cannot be kept. */
  down: []
}

// Lua, so that each registry change is one atomic step.
const SCRIPTS = {
  /** Gives an address to a holder; returns the previous holder's value. */
  claim: `
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if old and old ~= ARGV[2] then
  local node = string.match(old, '^(%S+) ')
  if node and node ~= ARGV[3] then redis.call('SREM', ARGV[4] .. node .. ':peers', ARGV[1]) end
end
return old`,
  /** Registers again after an outage, unless a live holder took the address meanwhile; returns that holder. */
  register: `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] then
  local node = string.match(old, '^(%S+) ')
  if node and redis.call('EXISTS', ARGV[4] .. node) == 1 then return old end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return false`,
  /** Takes an address from a holder, if it still holds it. */
  release: `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('SREM', KEYS[2], ARGV[1])
return 1`,
  /** Removes a dead node: its addresses (those it still holds) and its entries. */
  purge: `
local addresses = redis.call('SMEMBERS', KEYS[2])
local prefix = ARGV[1] .. ' '
local removed = 0
for _, address in ipairs(addresses) do
  local holder = redis.call('HGET', KEYS[1], address)
  if holder and string.sub(holder, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], address)
    removed = removed + 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return removed`
} as const

interface ScriptedRedis extends Redis {
  rdvClaim: (peers: string, nodePeers: string, address: string, holder: string, node: string, nodePrefix: string) => Promise<string | null>
  rdvRegister: (peers: string, nodePeers: string, address: string, holder: string, node: string, nodePrefix: string) => Promise<string | null>
  rdvRelease: (peers: string, nodePeers: string, address: string, holder: string) => Promise<number>
  rdvPurge: (peers: string, nodePeers: string, nodes: string, node: string) => Promise<number>
}

function parseHolder (value: string | null | undefined): Holder | undefined {
  if (typeof value !== 'string') return undefined
  const space = value.indexOf(' ')
  if (space <= 0) return undefined
  return { node: value.slice(0, space), connection: value.slice(space + 1) }
}

/** The header field naming the sending node (headers use `from` for addresses). */
const SENDER = 'sender'

/** A node message on the wire: header length (4 bytes), JSON header, payload. */
function encodeMessage (from: string, message: NodeMessage): Buffer {
  const header = Buffer.from(JSON.stringify({ ...message.header, [SENDER]: from }))
  const length = Buffer.alloc(4)
  length.writeUInt32BE(header.length)
  return Buffer.concat(message.payload === undefined ? [length, header] : [length, header, message.payload])
}

function decodeMessage (raw: Buffer): { from: string, message: NodeMessage } | undefined {
  if (raw.length < 4) return undefined
  const length = raw.readUInt32BE(0)
  if (raw.length < 4 + length) return undefined
  const header = JSON.parse(raw.subarray(4, 4 + length).toString()) as NodeMessage['header'] & { [SENDER]?: unknown }
  if (typeof header !== 'object' || header === null || typeof header.t !== 'string' || typeof header[SENDER] !== 'string') return undefined
  const { [SENDER]: from, ...rest } = header
  const payload = raw.length > 4 + length ? raw.subarray(4 + length) : undefined
  return { from, message: payload === undefined ? { header: rest } : { header: rest, payload } }
}

export class Cluster extends EventEmitter<ClusterEvents> {
  /** This process's id in the cluster, fresh at every start. */
  readonly node = randomBytes(8).toString('hex')
  private readonly commands: ScriptedRedis
  private readonly subscriber: Redis
  private heartbeat: NodeJS.Timeout | undefined
  private connected = false
  private closed = false
  /** Nodes whose key was alive at the last check, with what they said. */
  private readonly alive = new Map<string, NodeInfo>()
  /** Told how many addresses of a dead node this node purged. */
  onPurged: (addresses: number) => void = () => {}

  constructor (
    private readonly io: RendezvousServer,
    private readonly config: ClusterConfig,
    private readonly describe: () => NodeInfo
  ) {
    super()
    const retryStrategy = (attempt: number): number => Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** Math.min(attempt, 6))
    this.commands = new Redis(config.redis, {
      lazyConnect: true,
      // nothing piles up while Redis is away: commands fail at once
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy
    }) as ScriptedRedis
    // the subscriber only ever queues its few subscriptions
    this.subscriber = new Redis(config.redis, { lazyConnect: true, retryStrategy })
    this.commands.defineCommand('rdvClaim', { numberOfKeys: 2, lua: SCRIPTS.claim })
    this.commands.defineCommand('rdvRegister', { numberOfKeys: 2, lua: SCRIPTS.register })
    this.commands.defineCommand('rdvRelease', { numberOfKeys: 2, lua: SCRIPTS.release })
    this.commands.defineCommand('rdvPurge', { numberOfKeys: 3, lua: SCRIPTS.purge })
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

  /** Connections hearing announcements on the other nodes, as they last said. */
  get remoteListeners (): number {
    let n = 0
    for (const info of this.alive.values()) n += info.listeners
    return n
  }

  /**
   * Connects to Redis and installs the adapter. Resolves once Redis answered
   * or after a few seconds without it: the node then starts alone, degraded,
   * and joins the cluster when Redis comes.
   */
  async connect (): Promise<void> {
    this.subscriber.on('smessageBuffer', (channel: Buffer, raw: Buffer) => {
      if (channel.toString() !== nodeChannel(this.node)) return
      let decoded
      try {
        decoded = decodeMessage(raw)
      } catch {}
      if (decoded === undefined) return log('unreadable node message (%d bytes)', raw.length)
      this.emit('message', decoded.from, decoded.message)
    })
    void this.subscriber.ssubscribe(nodeChannel(this.node)).catch((err: Error) => { log('subscribe: %s', err.message) })
    // static: the adapter subscribes once, so nothing is subscribed while Redis may be away
    this.io.adapter(createShardedAdapter(this.commands, quietSubscriptions(this.subscriber), { channelPrefix: PREFIX, subscriptionMode: 'static' }))
    this.io.on('rendezvous:announce', (addresses: unknown, fresh: unknown) => {
      if (!Array.isArray(addresses) || !addresses.every((a) => typeof a === 'string')) return
      this.emit('announced', addresses as string[], typeof fresh === 'number' ? fresh : addresses.length)
    })
    this.io.on('rendezvous:gone', (node: unknown) => {
      if (typeof node === 'string') this.lost(node)
    })
    this.subscriber.connect().catch(() => {})
    const ready = new Promise<void>((resolve) => { this.commands.once('ready', () => { resolve() }) })
    this.commands.connect().catch(() => {})
    let timer: NodeJS.Timeout | undefined
    await Promise.race([ready, new Promise<void>((resolve) => { timer = setTimeout(resolve, CONNECT_PATIENCE_MS) })])
    clearTimeout(timer)
    if (!this.connected) logError('cluster: Redis at %s is not reachable; serving local peers alone until it is', this.config.redis)
    const period = Math.max(100, Math.floor(this.config.clusterNodeTimeoutMS / 3))
    this.heartbeat = setInterval(() => { void this.beat() }, period)
  }

  /** Announces addresses held here to the peers of every other node; the first `fresh` are new joins. */
  announce (addresses: string[], fresh: number): void {
    if (!this.connected || addresses.length === 0) return
    this.io.serverSideEmit('rendezvous:announce', addresses, fresh)
  }

  /** Sends a message to one node; false when Redis is away (the message is lost). */
  send (node: string, message: NodeMessage): boolean {
    if (!this.connected) return false
    this.commands.spublish(nodeChannel(node), encodeMessage(this.node, message)).catch((err: Error) => {
      log('message to node %s lost: %s', node, err.message)
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
    this.commands.rdvRelease(PEERS_KEY, nodePeersKey(this.node), address, this.holder(connection)).catch((err: Error) => {
      log('release of %s failed: %s', address, err.message)
    })
  }

  /** How the registry names a connection of this node (`parseHolder` reads it back). */
  private holder (connection: string): string {
    return `${this.node} ${connection}`
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
      (pipeline as unknown as ScriptedRedis).rdvRegister(PEERS_KEY, nodePeersKey(this.node), address, this.holder(connection), this.node, NODE_KEY_PREFIX)
    }
    const results = await pipeline.exec() ?? []
    results.forEach(([err, taken], i) => {
      if (err === null && typeof taken === 'string') lost.push(holders[i] as [string, string])
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
        this.io.serverSideEmit('rendezvous:gone', this.node)
      } catch (err) {
        log('leaving the cluster: %s', (err as Error).message)
      }
    }
    this.io.removeAllListeners('rendezvous:announce')
    this.io.removeAllListeners('rendezvous:gone')
  }

  /** Closes the Redis connections; after `leave` and after the adapter is closed (`io.close()`). */
  disconnect (): void {
    this.connected = false
    this.commands.disconnect()
    this.subscriber.disconnect()
    this.removeAllListeners()
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
    this.emit('down')
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
        this.onPurged(removed)
        this.lost(node)
      }
      // a node that left and was purged by another node
      for (const node of [...this.alive.keys()]) if (!nodes.includes(node)) this.lost(node)
    } catch (err) {
      log('heartbeat: %s', (err as Error).message)
    }
  }

  /**
   * Something here now depends on `node` (a dial to one of its peers): watch
   * it, so that its death is noticed even if no heartbeat has seen it yet.
   */
  watch (node: string): void {
    if (!this.alive.has(node)) this.alive.set(node, { listeners: 0, peers: 0 })
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
      return (...args: unknown[]) => (method.apply(target, args) as Promise<unknown>).catch((err: Error) => {
        log('%s: %s', property, err.message)
      })
    }
  })
}

function parseInfo (raw: string): NodeInfo {
  try {
    const info = JSON.parse(raw) as Partial<NodeInfo>
    return { listeners: Number(info.listeners) || 0, peers: Number(info.peers) || 0 }
  } catch {
    return { listeners: 0, peers: 0 }
  }
}
