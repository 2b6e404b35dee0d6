/**
 * The listener's node: dials made on another node to a connection here. The
 * dial itself lives on the dialer's node (remote-listener.ts); this node
 * offers it to its peer, passes its peer's stream events to the dialer's
 * node, and writes what that node sends.
 *
 * Credits both ways keep memory bounded across nodes: this node reports what
 * reached its peer (`delivered`), so that the dialer's node can hold its
 * sender back; and it stops reading from its peer while more than the
 * high-water mark of what it forwarded is unacknowledged (`received`), or
 * while the dialer's node asks it to (`pause`).
 */
import debug from 'debug'
import { ERRORS, EVENTS, wholeChunk, type PeerSocket } from '../protocol.js'
import type { Backpressure } from '../relay/backpressure.js'
import { peerError, streamEvent, streamNames } from '../relay/dial.js'
import { chunkOf, endOf, logIgnored, type Parties, type Party } from '../relay/parties.js'
import type { Registry } from '../registry.js'
import type { ToDialerNode, ToListenerNode } from './messages.js'
import type { NodeLink } from './remote-listener.js'

const log = debug('rendezvous:relay')

/** The dials one other node made to a local connection. */
interface Origin {
  node: string
  party: Party
  dials: Map<string, Proxied>
  /** Bytes forwarded to that node, and acknowledged by it. */
  forwarded: number
  received: number
  /** Bytes it wrote to the connection, and reported as delivered. */
  written: number
  reported: number
  reporting: NodeJS.Immediate | undefined
  /** The connection is paused: too much unacknowledged, or the node asked. */
  holding: boolean
  pausedByNode: boolean
}

interface Proxied {
  origin: Origin
  dial: string
  /** The address the dial went to, held by the local connection. */
  to: string
}

/** A local connection's dials made elsewhere. */
interface Served {
  origins: Map<string, Origin>
  /** Their stream names, with the dial each belongs to. */
  streams: Map<string, Proxied>
}

export interface ProxyComponents {
  nodes: NodeLink
  parties: Parties
  registry: Registry<PeerSocket>
  backpressure: Backpressure
  /** A local connection by id. */
  connection: (id: string) => PeerSocket | undefined
  /** The relay's party for a local connection. */
  local: (socket: PeerSocket) => Party
  /** Why `party` cannot take part in dial `dialId`, if it cannot. */
  refusal: (party: Party, dialId: string) => string | undefined
  /** Shutting down: new dials are refused. */
  draining: () => boolean
  /** Bytes written to a local connection. */
  delivered: (bytes: number) => void
}

/** The listener's answer as the dialer's node reads it: null accepts. */
function answerOf (reply: unknown): string | null {
  if (reply === undefined || reply === null || reply === false || reply === '') return null
  return peerError(reply, ERRORS.DIAL_REFUSED)
}

export class ListenerProxy {
  private readonly served = new Map<string, Served>()

  constructor (private readonly components: ProxyComponents, private readonly config: { dialTimeoutMS: number }) {}

  /** Whether dials made elsewhere keep the party of a local connection. */
  serves (party: Party): boolean {
    return (this.served.get(party.key)?.origins.size ?? 0) > 0
  }

  /** Streams of dials made elsewhere on this connection, or whether `name` is one of them. */
  streamsOf (party: Party): number {
    return this.served.get(party.key)?.streams.size ?? 0
  }

  uses (party: Party, name: string): boolean {
    return this.served.get(party.key)?.streams.has(name) === true
  }

  /** A message from the dialer's node `from`. */
  receive (from: string, message: ToListenerNode): void {
    if (message.t === 'incoming') return this.incoming(from, message)
    const party = this.components.parties.get(message.sid)
    const origin = party === undefined ? undefined : this.served.get(party.key)?.origins.get(from)
    if (party === undefined || origin === undefined) return
    switch (message.t) {
      case 'emit':
        if (message.value === null) party.endpoint.emit(message.event)
        else party.endpoint.emit(message.event, message.value)
        return
      case 'write':
        party.endpoint.write(message.event, message.chunk)
        origin.written += message.chunk.length
        party.relayed += message.chunk.length
        this.components.delivered(message.chunk.length)
        if (this.components.backpressure.isDrained(party.endpoint.backlog)) this.report(origin)
        return
      case 'received':
        if (message.bytes > origin.forwarded) return
        origin.received = Math.max(origin.received, message.bytes)
        if (origin.holding && this.components.backpressure.isDrained(origin.forwarded - origin.received)) {
          origin.holding = false
          party.valve.release()
        }
        return
      case 'pause':
      case 'resume': {
        const pause = message.t === 'pause'
        if (pause === origin.pausedByNode) return
        origin.pausedByNode = pause
        if (pause) party.valve.hold()
        else party.valve.release()
        return
      }
      case 'end': {
        const proxied = origin.dials.get(message.dial)
        if (proxied !== undefined) this.forget(proxied, false, false)
      }
    }
  }

  /**
   * A stream event from a local connection: true if it belongs to a dial made
   * elsewhere (it is then passed on to the dialer's node, or ignored).
   */
  forward (party: Party, type: string, name: string, value: unknown): boolean {
    const proxied = this.served.get(party.key)?.streams.get(name)
    if (proxied === undefined) return false
    const { origin } = proxied
    const base = { sid: party.key, dial: proxied.dial, name }
    // the listener accepts the dialer's stream, and sends on its own
    if (type === 'accept' && name.endsWith('.dialer')) {
      this.send(origin, { t: 'accepted', ...base })
    } else if (type === 'error' && name.endsWith('.listener')) {
      this.send(origin, { t: 'ended', ...base, end: endOf(value) })
    } else if (type === 'queue' && name.endsWith('.listener')) {
      const chunk = chunkOf(value)
      if (chunk === undefined) {
        this.send(origin, { t: 'ended', ...base, end: ERRORS.INVALID_CHUNK })
        return true
      }
      origin.forwarded += chunk.length
      party.relayed += chunk.length
      this.send(origin, { t: 'chunk', ...base, chunk: wholeChunk(chunk) })
      // the path to that node backs up: stop reading until it catches up
      if (!origin.holding && this.components.backpressure.isOver(origin.forwarded - origin.received)) {
        origin.holding = true
        party.valve.hold()
      }
    } else {
      logIgnored(party.key, type, name)
    }
    return true
  }

  /** Output to a local connection may have drained: tell the dialers' nodes. */
  drained (party: Party): void {
    const served = this.served.get(party.key)
    if (served === undefined || !this.components.backpressure.isDrained(party.endpoint.backlog)) return
    for (const origin of served.origins.values()) this.report(origin)
  }

  /** The local connection gave up `address`: the dials made to it end. */
  addressReleased (party: Party, address: string): void {
    for (const proxied of this.dialsOf(party)) {
      if (proxied.to === address) this.forget(proxied, true, true)
    }
  }

  /** The local connection is gone: the dialers' nodes hear it. */
  connectionClosed (party: Party): void {
    for (const proxied of this.dialsOf(party)) this.forget(proxied, false, true)
  }

  /** A node is gone: its dials end for the local connections. */
  nodeGone (node: string): void {
    for (const served of [...this.served.values()]) {
      const origin = served.origins.get(node)
      if (origin === undefined) continue
      for (const proxied of [...origin.dials.values()]) this.forget(proxied, true, false)
    }
  }

  /** Ends every dial made elsewhere, telling both sides. */
  stop (): void {
    for (const served of [...this.served.values()]) {
      for (const origin of [...served.origins.values()]) {
        for (const proxied of [...origin.dials.values()]) this.forget(proxied, true, true)
      }
    }
  }

  /** Another node's peer dials a local connection. */
  private incoming (from: string, message: Extract<ToListenerNode, { t: 'incoming' }>): void {
    const { sid, dial: dialId, to } = message
    const { components } = this
    const answer = (error: string | null): void => { components.nodes.send(from, { t: 'answer', sid, dial: dialId, error }) }
    const socket = components.connection(sid)
    if (dialId === '') return
    if (socket === undefined || !components.registry.holds(socket, to)) return answer(ERRORS.PEER_NOT_FOUND)
    if (components.draining()) return answer(ERRORS.SHUTTING_DOWN)
    const party = components.local(socket)
    const refused = components.refusal(party, dialId)
    if (refused !== undefined) {
      components.parties.releaseIfIdle(party)
      return answer(refused)
    }
    const origin = this.originOf(party, from)
    const proxied: Proxied = { origin, dial: dialId, to }
    origin.dials.set(dialId, proxied)
    const served = this.served.get(party.key) as Served
    for (const name of streamNames(dialId)) served.streams.set(name, proxied)
    log('[%s] dial %s from %s, made on node %s', sid, dialId, message.from, from)
    const timeout = message.timeout > 0 ? message.timeout : this.config.dialTimeoutMS
    socket.timeout(timeout).emit(EVENTS.INCOMING, dialId, message.from, (err: Error | null, ...reply: unknown[]) => {
      // no answer in time: the dialer's node has timed the dial out itself
      if (err === null && origin.dials.get(dialId) === proxied) answer(answerOf(reply[0]))
    })
  }

  private originOf (party: Party, node: string): Origin {
    let served = this.served.get(party.key)
    if (served === undefined) {
      served = { origins: new Map(), streams: new Map() }
      this.served.set(party.key, served)
    }
    let origin = served.origins.get(node)
    if (origin === undefined) {
      origin = { node, party, dials: new Map(), forwarded: 0, received: 0, written: 0, reported: 0, reporting: undefined, holding: false, pausedByNode: false }
      served.origins.set(node, origin)
      this.components.nodes.watch(node)
    }
    return origin
  }

  private dialsOf (party: Party): Proxied[] {
    const served = this.served.get(party.key)
    if (served === undefined) return []
    return [...served.origins.values()].flatMap((origin) => [...origin.dials.values()])
  }

  private send (origin: Origin, message: ToDialerNode): void {
    this.components.nodes.send(origin.node, message)
  }

  /** Reports to the dialer's node what reached the local connection, once per turn of the event loop. */
  private report (origin: Origin): void {
    origin.reporting ??= setImmediate(() => {
      origin.reporting = undefined
      if (origin.written === origin.reported || !this.components.backpressure.isDrained(origin.party.endpoint.backlog)) return
      origin.reported = origin.written
      this.send(origin, { t: 'delivered', sid: origin.party.key, bytes: origin.written })
    })
  }

  /**
   * Forgets a dial made on another node. `tellPeer`: the local connection is
   * still there and hears its streams end; `tellNode`: the dialer's node is
   * still there and hears that the dial is over.
   */
  private forget (proxied: Proxied, tellPeer: boolean, tellNode: boolean): void {
    const { origin, dial } = proxied
    if (origin.dials.get(dial) !== proxied) return
    origin.dials.delete(dial)
    const party = origin.party
    const served = this.served.get(party.key) as Served
    for (const name of streamNames(dial)) {
      if (served.streams.get(name) !== proxied) continue
      served.streams.delete(name)
      if (tellPeer) party.endpoint.emit(streamEvent('error', name), true)
    }
    if (tellNode) this.send(origin, { t: 'closed', sid: party.key, dial })
    if (origin.dials.size > 0) return
    if (origin.reporting !== undefined) clearImmediate(origin.reporting)
    if (origin.holding) party.valve.release()
    if (origin.pausedByNode) party.valve.release()
    served.origins.delete(origin.node)
    if (served.origins.size === 0) this.served.delete(party.key)
    this.components.parties.releaseIfIdle(party)
  }
}
