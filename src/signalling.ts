/**
 * webrtc-star signalling: each `ss-handshake` (an SDP offer or answer, or an
 * ICE candidate) is passed on, as `ws-handshake`, to the connection holding
 * the other end's address, on this node or on another node of the cluster.
 * Only what can be delivered is passed on: the sender must hold its own end
 * of the offer (the source address of an offer, the destination of an
 * answer), and the other end must be a webrtc-star peer; otherwise the offer
 * comes back to its sender with `err` set, as webrtc-star's own server
 * answered an absent peer.
 */
import debug from 'debug'
import type { Holder } from './cluster/remote-listener.js'
import type { NodeMessage } from './cluster/messages.js'
import { errorMessage } from './log.js'
import type { Metrics } from './metrics.js'
import { ERRORS, EVENTS, starOf, type Offer, type PeerSocket } from './protocol.js'
import type { Registry } from './registry.js'

const log = debug('rendezvous:signalling')

/** Cluster mode: how an offer reaches a peer of another node. */
export interface SignallingNodes {
  /** This node's id. */
  node: string
  send: (node: string, message: Extract<NodeMessage, { t: 'signal' }>) => boolean
  /** Who holds an address on any node, if Redis can say. */
  locate: (address: string) => Promise<Holder | undefined>
}

export interface SignallingComponents {
  registry: Registry<PeerSocket>
  metrics: Pick<Metrics, 'signalled'>
  /** A connection of this node, by id. */
  connection: (id: string) => PeerSocket | undefined
  /** Cluster mode only. */
  nodes?: SignallingNodes
}

/** The two ends of an offer: its sender's address, and the address it goes to. */
function endsOf (offer: Offer): [from: string, to: string] {
  return offer.answer === true ? [offer.dstMultiaddr, offer.srcMultiaddr] : [offer.srcMultiaddr, offer.dstMultiaddr]
}

export class Signalling {
  private readonly registry: Registry<PeerSocket>
  private readonly metrics: Pick<Metrics, 'signalled'>
  private readonly connection: (id: string) => PeerSocket | undefined
  private readonly nodes: SignallingNodes | undefined

  constructor (components: SignallingComponents) {
    ({ registry: this.registry, metrics: this.metrics, connection: this.connection, nodes: this.nodes } = components)
  }

  /** An `ss-handshake` from `socket`, checked (protocol.ts). */
  async handshake (socket: PeerSocket, offer: Offer): Promise<void> {
    const [from, to] = endsOf(offer)
    if (starOf(from) !== 'webrtc-star' || !this.registry.holds(socket, from)) {
      this.refuse(socket, offer, ERRORS.NOT_AUTHORIZED)
      return
    }
    if (starOf(to) !== 'webrtc-star') {
      this.unavailable(socket, offer)
      return
    }
    const holder = this.registry.holderOf(to)
    if (holder !== undefined) {
      holder.emit(EVENTS.SIGNAL, offer)
      this.metrics.signalled('relayed')
      return
    }
    const elsewhere = await this.locate(to)
    if (elsewhere !== undefined && this.nodes?.send(elsewhere.node, { t: 'signal', sid: elsewhere.connection, to, offer }) === true) {
      this.metrics.signalled('relayed')
      return
    }
    this.unavailable(socket, offer)
  }

  /** An offer that `socket` may not send, or too many of them: it comes back with the reason. */
  refuse (socket: PeerSocket, offer: Offer, error: string): void {
    log('[%s] offer %s refused: %s', socket.id, offer.intentId, error)
    this.metrics.signalled('refused')
    socket.emit(EVENTS.SIGNAL, { ...offer, err: error })
  }

  /** Cluster mode: an offer from another node for connection `sid` here, which held `to` when that node asked Redis. */
  deliver (sid: string, to: string, offer: Offer): void {
    const socket = this.connection(sid)
    if (socket === undefined || !this.registry.holds(socket, to)) {
      log('[%s] offer %s from another node dropped: %s is no longer held here', sid, offer.intentId, to)
      return
    }
    socket.emit(EVENTS.SIGNAL, offer)
  }

  /** The holder of `address` on another node, if there is one and Redis is reachable. */
  private async locate (address: string): Promise<Holder | undefined> {
    if (this.nodes === undefined) return undefined
    try {
      const holder = await this.nodes.locate(address)
      return holder !== undefined && holder.node !== this.nodes.node ? holder : undefined
    } catch (err) {
      log('cannot locate %s: %s', address, errorMessage(err))
      return undefined
    }
  }

  private unavailable (socket: PeerSocket, offer: Offer): void {
    log('[%s] offer %s: %s is not available', socket.id, offer.intentId, endsOf(offer)[1])
    this.metrics.signalled('unavailable')
    socket.emit(EVENTS.SIGNAL, { ...offer, err: ERRORS.PEER_NOT_AVAILABLE })
  }
}
