/**
 * Relaying across nodes (cluster mode). A dial belongs to the dialer's node;
 * when the listener is on another node, the relay there holds the listener's
 * connection and passes stream events both ways as node messages.
 *
 * On the dialer's node, the listener's connection is a `RemoteEndpoint`: the
 * relay writes to it, reads its backlog and pauses it exactly as it does a
 * local connection's `Flow`. Its backlog is what was written and the other
 * node has not yet reported as delivered to the peer, so when the path
 * between the nodes backs up, the relay stops reading from the sender just as
 * it does for a slow local receiver. The other direction has credits too:
 * the listener's node stops reading from its peer when the dialer's node has
 * not acknowledged a high-water mark of what it forwarded.
 */
import type { StreamEventName } from './protocol.js'
import type { NodeMessage } from './cluster.js'

/** The messages of the relay between nodes, by `header.t`. */
export const MESSAGES = {
  /** dialer's node → listener's node: a dial for one of your connections. */
  INCOMING: 'incoming',
  /** listener's node → dialer's node: the listener's answer. */
  ANSWER: 'answer',
  /** dialer's node → listener's node: emit this stream control event to the listener. */
  EMIT: 'emit',
  /** dialer's node → listener's node: a chunk for the listener. */
  WRITE: 'write',
  /** listener's node → dialer's node: that many bytes (in all) reached the listener. */
  DELIVERED: 'delivered',
  /** listener's node → dialer's node: a stream event from the listener. */
  EVENT: 'event',
  /** dialer's node → listener's node: that many bytes (in all) forwarded by you were taken. */
  RECEIVED: 'received',
  /** dialer's node → listener's node: stop, or go on, reading from the listener. */
  PAUSE: 'pause',
  RESUME: 'resume',
  /** dialer's node → listener's node: the dial is over, forget it. */
  END: 'end',
  /** listener's node → dialer's node: the listener is gone or gave up the address. */
  CLOSED: 'closed'
} as const

/** How the relay reaches other nodes. */
export interface NodeLink {
  /** This node's id. */
  readonly node: string
  /** Sends a message to one node; false when it cannot (Redis away). */
  send: (node: string, message: NodeMessage) => boolean
}

/** The key of a remote connection in the relay's tables. */
export function remoteKey (node: string, connection: string): string {
  return `${node}/${connection}`
}

/** A connection on another node, as the relay on the dialer's node sees it. */
export class RemoteEndpoint {
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
    readonly node: string,
    readonly connection: string,
    /** Called whenever the backlog may have shrunk. */
    private readonly drained: () => void
  ) {}

  get id (): string {
    return remoteKey(this.node, this.connection)
  }

  get backlog (): number {
    return this.written - this.delivered
  }

  get isPaused (): boolean {
    return this.paused
  }

  emit (event: StreamEventName, ...args: Array<true | string>): void {
    this.send({ header: { t: MESSAGES.EMIT, sid: this.connection, event, value: args[0] ?? null } })
  }

  write (event: StreamEventName, chunk: Buffer): void {
    this.written += chunk.length
    this.send({ header: { t: MESSAGES.WRITE, sid: this.connection, event }, payload: chunk })
  }

  pause (): void {
    if (this.paused) return
    this.paused = true
    this.send({ header: { t: MESSAGES.PAUSE, sid: this.connection } })
  }

  resume (): void {
    if (!this.paused) return
    this.paused = false
    this.send({ header: { t: MESSAGES.RESUME, sid: this.connection } })
  }

  close (): void {
    if (this.reporting !== undefined) clearImmediate(this.reporting)
    this.reporting = undefined
    if (this.paused) this.resume()
  }

  /** Asks the peer's node to offer the dial to the peer. */
  incoming (dial: string, from: string, to: string, timeoutMs: number): boolean {
    return this.send({ header: { t: MESSAGES.INCOMING, sid: this.connection, dial, from, to, timeout: timeoutMs } })
  }

  /** Tells the peer's node that a dial is over. */
  end (dial: string): void {
    this.send({ header: { t: MESSAGES.END, sid: this.connection, dial } })
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
      this.send({ header: { t: MESSAGES.RECEIVED, sid: this.connection, bytes: this.received } })
    })
  }

  private send (message: NodeMessage): boolean {
    return this.nodes.send(this.node, message)
  }
}
