/**
 * `ss-join`, `ss-leave` and disconnect: the join flow across the crypto
 * challenge, the registry and discovery (PROTOCOL.md, "Client → server").
 */
import debug from 'debug'
import { WebSocketStar } from '@multiformats/mafmt'
import { Challenges, keyForPeerId } from './challenge.js'
import type { Cluster } from './cluster.js'
import type { Discovery } from './discovery.js'
import type { Metrics } from './metrics.js'
import { ERRORS, type Ack, type JoinRequest, type PeerSocket } from './protocol.js'
import type { Registry } from './registry.js'

const log = debug('rendezvous:join')

/** Told when a connection no longer holds an address, so what depends on it can end. */
export type ReleaseHook = (socket: PeerSocket, address: string) => void

/** Message to the node whose connection lost an address to a join here. */
export const TAKEN_OVER = 'taken'

/** The cluster's shared registry, as joins use it. */
export type SharedRegistry = Pick<Cluster, 'up' | 'claim' | 'release' | 'sample' | 'send'>

export interface JoinConfig {
  cryptoChallenge: boolean
  strictMultiaddr: boolean
  maxPeersInJoinReply: number
  maxAddressesPerConnection: number
  maxPeers: number
}

export class Joins {
  /** Set in cluster mode. */
  cluster: SharedRegistry | undefined

  constructor (
    private readonly config: JoinConfig,
    private readonly registry: Registry<PeerSocket>,
    private readonly challenges: Challenges,
    private readonly discovery: Discovery,
    private readonly metrics: Metrics,
    private readonly released: ReleaseHook
  ) {}

  async join (socket: PeerSocket, request: JoinRequest): Promise<void> {
    const startedAt = process.hrtime.bigint()
    const { address, data } = request
    const ack: Ack = request.ack ?? (() => {})
    const isSignature = this.config.cryptoChallenge && this.challenges.has(socket.id, address)
    // as the old server counted: the signature step is part of the join it answers
    if (!isSignature) this.metrics.joinAttempt()
    const fail = (error: string): void => {
      log('[%s] join %s refused: %s', socket.id, address, error)
      this.metrics.joinAnswered('failure', startedAt)
      ack(error)
    }

    if (this.config.strictMultiaddr && !WebSocketStar.matches(request.multiaddr)) return fail(ERRORS.INVALID_MULTIADDR)
    const full = this.capacityError(socket, address)
    if (full !== undefined) return fail(full)
    if (!this.config.cryptoChallenge) return await this.finalize(socket, address, ack, startedAt)
    if (data === '') return fail(ERRORS.NO_ID)

    if (isSignature) {
      const result = await this.challenges.verify(socket.id, address, data)
      if (result !== 'verified') return fail(result)
      // the connection may have closed, or the server filled, while the signature was checked
      if (!socket.connected) return
      const filled = this.capacityError(socket, address)
      if (filled !== undefined) return fail(filled)
      return await this.finalize(socket, address, ack, startedAt)
    }

    const key = keyForPeerId(data, request.peerId)
    if (typeof key === 'string') return fail(key)
    const begun = this.challenges.begin(socket.id, address, key)
    if ('error' in begun) return fail(begun.error)
    log('[%s] challenge sent for %s', socket.id, address)
    this.metrics.joinAnswered('challenge', startedAt)
    ack(null, begun.nonce)
  }

  leave (socket: PeerSocket, address: string): void {
    if (!this.registry.release(address, socket)) return
    log('[%s] left %s', socket.id, address)
    this.cluster?.release(address, socket.id)
    this.forget(socket, address)
  }

  disconnect (socket: PeerSocket): void {
    for (const address of this.registry.releaseAll(socket.id)) {
      log('[%s] gone, releasing %s', socket.id, address)
      this.cluster?.release(address, socket.id)
      this.discovery.remove(address)
    }
    this.challenges.dropConnection(socket.id)
  }

  /** A join on another node took `address` from connection `connectionId` here. */
  takenElsewhere (address: string, connectionId: string): void {
    const holder = this.registry.holderOf(address)
    if (holder === undefined || holder.id !== connectionId) return
    this.registry.release(address, holder)
    log('[%s] lost %s to a join on another node', holder.id, address)
    this.forget(holder, address)
  }

  /** Whether the connection may take one more address, and the server one more peer. */
  private capacityError (socket: PeerSocket, address: string): string | undefined {
    const holder = this.registry.holderOf(address)
    if (holder?.id === socket.id) return undefined
    if ((this.registry.addressesOf(socket.id)?.size ?? 0) >= this.config.maxAddressesPerConnection) return ERRORS.TOO_MANY_ADDRESSES
    if (this.config.maxPeers > 0 && holder === undefined && this.registry.size >= this.config.maxPeers) return ERRORS.SERVER_FULL
    return undefined
  }

  private async finalize (socket: PeerSocket, address: string, ack: Ack, startedAt: bigint): Promise<void> {
    const previous = this.registry.claim(address, socket)
    if (previous !== undefined) {
      log('[%s] takes %s over from [%s]', socket.id, address, previous.id)
      this.forget(previous, address)
    }
    this.discovery.subscribe(socket)
    const others = await this.claimInCluster(socket, address) ?? this.discovery.sample(this.config.maxPeersInJoinReply, address)
    if (!this.registry.holds(socket, address)) {
      // gone, left or taken over while Redis answered
      if (socket.connected) ack(null, null, others)
      return
    }
    this.metrics.joinAnswered('success', startedAt)
    log('[%s] joined %s', socket.id, address)
    ack(null, null, others)
    this.discovery.add(address, socket.id)
  }

  /**
   * Cluster mode: records the address in the shared registry, takes it from
   * a connection on another node that held it, and lists peers of every node.
   * Undefined when Redis is away: the join is then local only.
   */
  private async claimInCluster (socket: PeerSocket, address: string): Promise<string[] | undefined> {
    const cluster = this.cluster
    if (cluster === undefined || !cluster.up) return undefined
    try {
      const [elsewhere, others] = await Promise.all([
        cluster.claim(address, socket.id),
        cluster.sample(this.config.maxPeersInJoinReply, address)
      ])
      if (elsewhere !== undefined) {
        log('[%s] takes %s over from [%s] on node %s', socket.id, address, elsewhere.connection, elsewhere.node)
        cluster.send(elsewhere.node, { header: { t: TAKEN_OVER, address, sid: elsewhere.connection } })
      }
      // left or gone meanwhile: the shared registry must not keep it
      if (!this.registry.holds(socket, address)) cluster.release(address, socket.id)
      return others
    } catch (err) {
      log('[%s] join of %s is local only: %s', socket.id, address, (err as Error).message)
      return undefined
    }
  }

  /** `socket` no longer holds `address`: stop announcing it, and to it if it holds nothing. */
  private forget (socket: PeerSocket, address: string): void {
    this.discovery.remove(address)
    this.released(socket, address)
    if (this.registry.addressesOf(socket.id) === undefined) this.discovery.unsubscribe(socket)
  }
}
