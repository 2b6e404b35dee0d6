/**
 * The dialer's node: a dial stays with the dialer's node, and when the
 * listener is on another node the relay here sees the listener's connection
 * as a `RemoteListener`. The relay writes to it, reads its backlog and pauses
 * it exactly as it does a local connection's `Flow`; its backlog is what was
 * written and the other node has not yet reported as delivered to the peer,
 * so when the path between the nodes backs up, the relay stops reading from
 * the sender just as it does for a slow local receiver. The other way, this
 * node acknowledges what it took of the listener's data, so that the
 * listener's node can hold its peer back in turn (proxy.ts).
 */
import type { Endpoint } from '../relay/backpressure.js'
import type { Dial } from '../relay/dial.js'
import type { Parties, Party } from '../relay/parties.js'
import { wholeChunk, type Chunk, type StreamEventName } from '../protocol.js'
import type { ToDialerNode, ToListenerNode } from './messages.js'

/** How the relay reaches the other nodes. */
export interface NodeLink {
  /** This node's id. */
  readonly node: string
  /** Sends a message to one node; false when it cannot (Redis away). */
  send: (node: string, message: ToListenerNode | ToDialerNode) => boolean
  /** Where an address not held here is held, if anywhere. */
  locate: (address: string) => Promise<Holder | undefined>
  /** Something here depends on `node` now: its death must end it. */
  watch: (node: string) => void
}

/** Where an address is held in the cluster: the node, and the connection there. */
export interface Holder {
  node: string
  connection: string
}

/** The key of a remote connection in the relay's tables. */
function remoteKey (node: string, connection: string): string {
  return `${node}/${connection}`
}

/** A connection on another node, as the relay on the dialer's node sees it. */
export class RemoteListener implements Endpoint {
  /** Bytes written to the peer, and reported delivered by its node. */
  private written = 0
  private delivered = 0
  private paused = false
  /** Bytes this node took from what the peer's node forwarded, and last reported. */
  private received = 0
  private reported = 0
  private reporting: NodeJS.Immediate | undefined

  constructor (
    private readonly nodes: NodeLink,
    readonly holder: Holder,
    /** Called whenever the backlog may have shrunk. */
    private readonly drained: () => void
  ) {}

  get backlog (): number {
    return this.written - this.delivered
  }

  get isPaused (): boolean {
    return this.paused
  }

  emit (event: StreamEventName, ...args: Array<true | string>): void {
    this.send({ t: 'emit', sid: this.holder.connection, event, value: args[0] ?? null })
  }

  write (event: StreamEventName, chunk: Chunk): void {
    this.written += chunk.length
    this.send({ t: 'write', sid: this.holder.connection, event, chunk: wholeChunk(chunk) })
  }

  pause (): void {
    if (this.paused) return
    this.paused = true
    this.send({ t: 'pause', sid: this.holder.connection })
  }

  resume (): void {
    if (!this.paused) return
    this.paused = false
    this.send({ t: 'resume', sid: this.holder.connection })
  }

  close (): void {
    if (this.reporting !== undefined) clearImmediate(this.reporting)
    this.reporting = undefined
    if (this.paused) this.resume()
  }

  /** Asks the peer's node to offer the dial to the peer. */
  offer (dial: Dial, timeoutMs: number): boolean {
    return this.send({ t: 'incoming', sid: this.holder.connection, dial: dial.id, from: dial.from, to: dial.to, timeout: timeoutMs })
  }

  /** Tells the peer's node that a dial is over. */
  over (dial: Dial): void {
    this.send({ t: 'end', sid: this.holder.connection, dial: dial.id })
  }

  /** The peer's node reports bytes delivered. */
  onDelivered (total: number): void {
    if (total <= this.delivered || total > this.written) return
    this.delivered = total
    this.drained()
  }

  /** Bytes forwarded by the peer's node were taken here: acknowledged once per turn of the event loop. */
  onReceived (bytes: number): void {
    this.received += bytes
    this.reporting ??= setImmediate(() => {
      this.reporting = undefined
      if (this.received === this.reported) return
      this.reported = this.received
      this.send({ t: 'received', sid: this.holder.connection, bytes: this.received })
    })
  }

  private send (message: ToListenerNode): boolean {
    return this.nodes.send(this.holder.node, message)
  }
}

/** The relay's dials to connections on other nodes, and what those nodes say of them. */
export class RemoteListeners {
  constructor (private readonly nodes: NodeLink, private readonly parties: Parties) {}

  /** The relay's party for a connection on another node. */
  party (holder: Holder): Party {
    const key = remoteKey(holder.node, holder.connection)
    if (this.parties.get(key) === undefined) this.nodes.watch(holder.node)
    return this.parties.open(key, (drained) => new RemoteListener(this.nodes, holder, drained))
  }

  /** The listener of `dial`, if it is on another node. */
  listenerOf (dial: Dial): RemoteListener | undefined {
    const endpoint = dial.listener.endpoint
    return endpoint instanceof RemoteListener ? endpoint : undefined
  }

  /** The node a party's connection is on, if it is another one. */
  nodeOf (party: Party): string | undefined {
    return party.endpoint instanceof RemoteListener ? party.endpoint.holder.node : undefined
  }

  /** A message from the listener's node `from`. */
  receive (from: string, message: ToDialerNode): void {
    const party = this.parties.get(remoteKey(from, message.sid))
    const listener = party?.endpoint
    if (party === undefined || !(listener instanceof RemoteListener)) return
    switch (message.t) {
      case 'answer':
        this.dialOf(party, message.dial)?.answer(message.error)
        return
      case 'accepted':
        this.parties.dispatch(party, 'accept', message.name, undefined)
        return
      case 'chunk':
        listener.onReceived(message.chunk.length)
        this.parties.dispatch(party, 'queue', message.name, message.chunk)
        return
      case 'ended':
        this.parties.dispatch(party, 'error', message.name, message.end)
        return
      case 'delivered':
        listener.onDelivered(message.bytes)
        return
      case 'closed':
        this.dialOf(party, message.dial)?.end(true, party)
    }
  }

  private dialOf (party: Party, id: string): Dial | undefined {
    for (const dial of party.dials) if (dial.id === id && dial.listener === party) return dial
    return undefined
  }
}
