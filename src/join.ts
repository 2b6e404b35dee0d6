/**
 * `ss-join`, `ss-leave` and disconnect: the join flow across the crypto
 * challenge, the registry and discovery (PROTOCOL.md, "Client → server").
 * A webrtc-star join is the address alone: no challenge (its clients have
 * none), no answer; it hears of the webrtc-star peers joined so far at once.
 */
import debug from 'debug'
import { WebSockets, WebSocketsSecure, WebSocketStar } from '@multiformats/mafmt'
import type { Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { keyForPeerId, type Challenges } from './challenge.js'
import type { ClusterNode } from './cluster/node.js'
import type { Discovery } from './discovery.js'
import { errorMessage } from './log.js'
import type { Metrics } from './metrics.js'
import type { PeerPolicy } from './policy.js'
import { ERRORS, EVENTS, peerIdOfAddress, starOf, type Ack, type JoinRequest, type PeerSocket, type Star } from './protocol.js'
import type { Registry } from './registry.js'

const log = debug('rendezvous:join')

/** Told when a connection no longer holds an address, so what depends on it can end. */
export type ReleaseHook = (socket: PeerSocket, address: string) => void

/** The cluster's shared registry, as joins use it. */
export type SharedRegistry = Pick<ClusterNode, 'up' | 'claim' | 'release' | 'sample' | 'send'>

export interface JoinComponents {
  registry: Registry<PeerSocket>
  challenges: Challenges
  discovery: Discovery
  metrics: Pick<Metrics, 'joinAttempt' | 'joinAnswered' | 'refused'>
  /** Which peer ids may join (`--peerPolicy`). */
  policy: Pick<PeerPolicy, 'allows'>
  /** Told when a connection no longer holds an address. */
  released: ReleaseHook
  /** Cluster mode: the registry every node shares. */
  shared?: SharedRegistry
}

export interface JoinConfig {
  cryptoChallenge: boolean
  webrtcStar: boolean
  strictMultiaddr: boolean
  maxPeersInJoinReply: number
  maxAddressesPerConnection: number
  maxPeers: number
}

/** The multiaddr code of `p2p-webrtc-star`. */
const WEBRTC_STAR_CODE = 275

/**
 * A webrtc-star listening address with its peer id, as webrtc-star's clients
 * join: `/dns4/<host>/tcp/<port>/wss/p2p-webrtc-star/p2p/<id>` (or ws, or
 * ip4/ip6). mafmt's own matcher of it is deprecated, so: WebSockets, then
 * these two.
 */
function isWebrtcStar (ma: Multiaddr): boolean {
  const names = ma.getComponents().map((component) => component.name)
  if (names.length < 2 || names[names.length - 2] !== 'p2p-webrtc-star' || names[names.length - 1] !== 'p2p') return false
  const socket = ma.decapsulateCode(WEBRTC_STAR_CODE)
  return WebSockets.matches(socket) || WebSocketsSecure.matches(socket)
}

export class Joins {
  private readonly registry: Registry<PeerSocket>
  private readonly challenges: Challenges
  private readonly discovery: Discovery
  private readonly metrics: Pick<Metrics, 'joinAttempt' | 'joinAnswered' | 'refused'>
  private readonly policy: Pick<PeerPolicy, 'allows'>
  private readonly released: ReleaseHook
  private readonly shared: SharedRegistry | undefined

  constructor (components: JoinComponents, private readonly config: JoinConfig) {
    ({ registry: this.registry, challenges: this.challenges, discovery: this.discovery, metrics: this.metrics, policy: this.policy, released: this.released, shared: this.shared } = components)
  }

  async join (socket: PeerSocket, request: JoinRequest): Promise<void> {
    const startedAt = process.hrtime.bigint()
    const { address, data } = request
    const ack: Ack = request.ack ?? (() => {})
    const { star } = request
    const challenged = this.config.cryptoChallenge && star === 'websocket-star'
    const isSignature = challenged && this.challenges.has(socket.id, address)
    // as the old server counted: the signature step is part of the join it answers
    if (!isSignature) this.metrics.joinAttempt(star)
    const fail = (error: string): void => {
      log('[%s] join %s refused: %s', socket.id, address, error)
      this.metrics.joinAnswered('failure', startedAt, star)
      ack(error)
    }

    const invalid = this.addressError(request)
    if (invalid !== undefined) { fail(invalid); return; }
    // checked at both steps of the challenge: the policy may change in between
    if (!this.allowed(request.peerId)) { fail(ERRORS.PEER_NOT_ALLOWED); return; }
    const full = this.capacityError(socket, address)
    if (full !== undefined) { fail(full); return; }
    if (!challenged) { await this.finalize(socket, address, ack, startedAt); return; }
    if (data === '') { fail(ERRORS.NO_ID); return; }

    if (isSignature) {
      const result = await this.challenges.verify(socket.id, address, data)
      if (result !== 'verified') { fail(result); return; }
      // the connection may have closed, or the server filled, while the signature was checked
      if (!socket.connected) return
      if (!this.allowed(request.peerId)) { fail(ERRORS.PEER_NOT_ALLOWED); return; }
      const filled = this.capacityError(socket, address)
      if (filled !== undefined) { fail(filled); return; }
      await this.finalize(socket, address, ack, startedAt); return;
    }

    const key = keyForPeerId(data, request.peerId)
    if (typeof key === 'string') { fail(key); return; }
    const begun = this.challenges.begin(socket.id, address, key)
    if ('error' in begun) { fail(begun.error); return; }
    log('[%s] challenge sent for %s', socket.id, address)
    this.metrics.joinAnswered('challenge', startedAt, star)
    ack(null, begun.nonce)
  }

  /** Why the address of a join is refused, if it is. */
  private addressError ({ star, multiaddr, peerId }: JoinRequest): string | undefined {
    if (star === 'websocket-star') return this.config.strictMultiaddr && !WebSocketStar.matches(multiaddr) ? ERRORS.INVALID_MULTIADDR : undefined
    if (!this.config.webrtcStar) return ERRORS.WEBRTC_STAR_OFF
    if (this.config.strictMultiaddr && !isWebrtcStar(multiaddr)) return ERRORS.INVALID_MULTIADDR
    // webrtc-star clients read the peer id of every address they hear of, and some crash on one they cannot
    try {
      peerIdFromString(peerId)
      return undefined
    } catch {
      return ERRORS.INVALID_MULTIADDR
    }
  }

  /** webrtc-star's `ss-leave()` without an address: the connection leaves every webrtc-star address it holds. */
  leaveStar (socket: PeerSocket, star: Star): void {
    for (const address of [...this.registry.addressesOf(socket.id) ?? []]) {
      if (starOf(address) === star) this.leave(socket, address)
    }
  }

  leave (socket: PeerSocket, address: string): void {
    if (!this.registry.release(address, socket)) return
    log('[%s] left %s', socket.id, address)
    this.shared?.release(address, socket.id)
    this.forget(socket, address)
  }

  disconnect (socket: PeerSocket): void {
    for (const address of this.registry.releaseAll(socket.id)) {
      log('[%s] gone, releasing %s', socket.id, address)
      this.shared?.release(address, socket.id)
      this.discovery.remove(address)
    }
    this.challenges.dropConnection(socket.id)
  }

  /**
   * The peer policy changed: every address whose peer id it now refuses is
   * released as `ss-leave` would, which ends its relayed streams; dials to it
   * then find no peer and dials from it are not authorized.
   */
  applyPolicy (): void {
    for (const [address, socket] of this.releaseWhere((address) => !this.policy.allows(peerIdOfAddress(address)))) {
      log('[%s] %s released: refused by the peer policy', socket.id, address)
      this.metrics.refused('peer policy')
    }
  }

  /**
   * An operator removes a peer (`POST /admin/peers/<id>/disconnect`): its
   * addresses here are released as the peer policy releases them. Returns
   * them, each with the connection that held it.
   */
  removePeer (matches: (address: string) => boolean): Array<[address: string, socket: PeerSocket]> {
    const removed = this.releaseWhere(matches)
    for (const [address, socket] of removed) log('[%s] %s released: removed by the operator', socket.id, address)
    return removed
  }

  /** A join on another node took `address` from connection `connectionId` here. */
  takenElsewhere (address: string, connectionId: string): void {
    const holder = this.registry.holderOf(address)
    if (holder === undefined || holder.id !== connectionId) return
    this.registry.release(address, holder)
    log('[%s] lost %s to a join on another node', holder.id, address)
    this.forget(holder, address)
  }

  /** Releases, as `ss-leave` would, every address here that `matches`; returns them with their holders. */
  private releaseWhere (matches: (address: string) => boolean): Array<[address: string, socket: PeerSocket]> {
    const released: Array<[string, PeerSocket]> = []
    for (const [address, socket] of [...this.registry.entries()]) {
      if (!matches(address)) continue
      this.registry.release(address, socket)
      this.shared?.release(address, socket.id)
      this.forget(socket, address)
      released.push([address, socket])
    }
    return released
  }

  /** Whether the peer policy lets `peerId` join; a refusal is counted. */
  private allowed (peerId: string): boolean {
    if (this.policy.allows(peerId)) return true
    this.metrics.refused('peer policy')
    return false
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
    const star = starOf(address)
    const previous = this.registry.claim(address, socket)
    if (previous !== undefined) {
      log('[%s] takes %s over from [%s]', socket.id, address, previous.id)
      this.forget(previous, address)
    }
    this.discovery.subscribe(socket, star)
    const inCluster = await this.claimInCluster(socket, address)
    const others = inCluster?.filter((other) => starOf(other) === star) ?? this.discovery.sample(this.config.maxPeersInJoinReply, address, star)
    if (!this.registry.holds(socket, address)) {
      // gone, left or taken over while Redis answered
      if (socket.connected) ack(null, null, others)
      return
    }
    this.metrics.joinAnswered('success', startedAt, star)
    log('[%s] joined %s', socket.id, address)
    ack(null, null, others)
    // webrtc-star has no answer to a join: its peers are announced to the newcomer now, rather than at their next refresh
    if (star === 'webrtc-star') for (const other of others) socket.emit(EVENTS.PEER, other)
    this.discovery.add(address, socket.id)
  }

  /**
   * Cluster mode: records the address in the shared registry, takes it from
   * a connection on another node that held it, and lists peers of every node.
   * Undefined when Redis is away: the join is then local only.
   */
  private async claimInCluster (socket: PeerSocket, address: string): Promise<string[] | undefined> {
    const cluster = this.shared
    if (cluster === undefined || !cluster.up) return undefined
    try {
      const [elsewhere, others] = await Promise.all([
        cluster.claim(address, socket.id),
        cluster.sample(this.config.maxPeersInJoinReply, address)
      ])
      if (elsewhere !== undefined) {
        log('[%s] takes %s over from [%s] on node %s', socket.id, address, elsewhere.connection, elsewhere.node)
        cluster.send(elsewhere.node, { t: 'taken', address, sid: elsewhere.connection })
      }
      // left or gone meanwhile: the shared registry must not keep it
      if (!this.registry.holds(socket, address)) cluster.release(address, socket.id)
      return others
    } catch (err) {
      log('[%s] join of %s is local only: %s', socket.id, address, errorMessage(err))
      return undefined
    }
  }

  /** `socket` no longer holds `address`: stop announcing it, and to it if it holds nothing of its transport. */
  private forget (socket: PeerSocket, address: string): void {
    this.discovery.remove(address)
    this.released(socket, address)
    const star = starOf(address)
    const held = this.registry.addressesOf(socket.id)
    if (held === undefined || ![...held].some((other) => starOf(other) === star)) this.discovery.unsubscribe(socket, star)
  }
}
