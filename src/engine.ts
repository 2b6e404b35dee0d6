/**
 * Flow control on one Engine.IO connection, below Socket.IO: how many bytes
 * are waiting to be written to a peer, when they drain, and pausing reads
 * from a peer. Socket.IO has no public API for any of this, so this file is
 * the one place that reaches into Engine.IO's transports; everything else
 * uses the small `Flow` interface.
 *
 * - websocket: the `ws` socket's `bufferedAmount`, its `pause()`/`resume()`,
 *   and the transport's `drain` event once a batch reached the kernel.
 * - polling: a paused connection's next data request (HTTP POST) is held
 *   until resume. The client sends one POST at a time, so holding it stops
 *   the sender exactly as a closed TCP window would.
 */
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { PeerSocket, RendezvousServer } from './protocol.js'

/** The parts of Engine.IO's transports used here. */
interface Transport extends EventEmitter {
  name: string
  socket?: { bufferedAmount?: number, pause?: () => void, resume?: () => void }
  onDataRequest?: (req: IncomingMessage, res: ServerResponse) => void
}

interface EngineSocket extends EventEmitter {
  transport: Transport
  /** Closes the connection when the peer's heartbeat is late. */
  pingTimeoutTimer?: NodeJS.Timeout | null
  /** Packets Engine.IO holds until the transport can take them. */
  writeBuffer?: Array<{ data?: unknown }>
}

/** How often a paused connection's heartbeat deadline is pushed back. */
const HEARTBEAT_HOLD_MS = 1000

export class Flow {
  /** Bytes handed to Engine.IO by `write` and not yet flushed to the transport. */
  private engineBytes = 0
  private paused = false
  private held: Array<[IncomingMessage, ServerResponse]> = []
  private heartbeatHold: NodeJS.Timeout | undefined
  private transport: Transport
  private readonly onDrain = (): void => { this.drained() }
  private readonly onFlush = (): void => { this.engineBytes = 0 }
  private readonly onUpgrade = (transport: Transport): void => { this.attach(transport) }

  /**
   * @param drained called whenever queued output may have shrunk
   */
  constructor (private readonly socket: PeerSocket, private readonly drained: () => void) {
    const conn = socket.conn as unknown as EngineSocket
    this.transport = conn.transport
    conn.on('flush', this.onFlush)
    conn.on('drain', this.onDrain)
    conn.on('upgrade', this.onUpgrade)
    this.transport.on('drain', this.onDrain)
  }

  /** Bytes written to this peer that have not reached the kernel yet. */
  get backlog (): number {
    return this.engineBytes + (this.transport.socket?.bufferedAmount ?? 0)
  }

  get isPaused (): boolean {
    return this.paused
  }

  /** The connection's id. */
  get id (): string {
    return this.socket.id
  }

  /** Emits a control event of a relayed stream (`accept`, or `error` with how it ended). */
  emit (event: `socket.io-pull-stream.${string}`, ...args: Array<true | string>): void {
    this.socket.emit(event, ...args)
  }

  /**
   * Emits `event` with a binary chunk, counting it until it is flushed.
   * Counted first: Engine.IO flushes synchronously inside emit when it can.
   */
  write (event: `socket.io-pull-stream.${string}`, chunk: Buffer): void {
    this.engineBytes += chunk.length
    this.socket.emit(event, chunk)
  }

  /** Stops reading from this peer until `resume`. */
  pause (): void {
    if (this.paused) return
    this.paused = true
    this.pauseTransport(this.transport)
    // while not read, the peer's heartbeats wait unread in the socket: its
    // silence is our doing, so its deadline is held off until resume
    const conn = this.socket.conn as unknown as EngineSocket
    this.heartbeatHold = setInterval(() => { conn.pingTimeoutTimer?.refresh() }, HEARTBEAT_HOLD_MS)
  }

  resume (): void {
    if (!this.paused) return
    this.paused = false
    clearInterval(this.heartbeatHold)
    this.transport.socket?.resume?.()
    this.restorePolling(this.transport)
    const held = this.held
    this.held = []
    for (const [req, res] of held) this.transport.onDataRequest?.(req, res)
  }

  /** The connection is gone: let go of its transport. */
  close (): void {
    const conn = this.socket.conn as unknown as EngineSocket
    conn.off('flush', this.onFlush)
    conn.off('drain', this.onDrain)
    conn.off('upgrade', this.onUpgrade)
    this.transport.off('drain', this.onDrain)
    this.restorePolling(this.transport)
    clearInterval(this.heartbeatHold)
    for (const [, res] of this.held) res.destroy()
    this.held = []
  }

  private attach (transport: Transport): void {
    this.transport.off('drain', this.onDrain)
    this.restorePolling(this.transport)
    this.transport = transport
    transport.on('drain', this.onDrain)
    if (this.paused) this.pauseTransport(transport)
  }

  private pauseTransport (transport: Transport): void {
    if (transport.socket?.pause !== undefined) {
      transport.socket.pause()
      return
    }
    const original = transport.onDataRequest
    if (original === undefined || Object.prototype.hasOwnProperty.call(transport, 'onDataRequest')) return
    // an own property shadows the prototype's method until restorePolling deletes it
    transport.onDataRequest = (req, res) => {
      if (!this.paused) {
        original.call(transport, req, res)
        return
      }
      req.pause()
      this.held.push([req, res])
    }
  }

  private restorePolling (transport: Transport): void {
    if (Object.prototype.hasOwnProperty.call(transport, 'onDataRequest')) delete transport.onDataRequest
  }
}

/**
 * The TCP socket under a connection's WebSocket, when frames may be written to
 * it directly: the transport is an open websocket that sends every frame
 * synchronously (no permessage-deflate, which would queue them), and Engine.IO
 * holds nothing back. That last part matters: a binary Socket.IO packet is a
 * text header and then its bytes, which Engine.IO keeps in its write buffer
 * until the header's write completes; a frame written in between would split
 * the packet. Undefined for polling, during an upgrade, or once closing.
 */
export function rawSocketOf (socket: PeerSocket): Socket | undefined {
  const conn = socket.conn as unknown as EngineSocket
  const transport = conn.transport as Transport & { writable?: boolean }
  if (transport.writable !== true || (conn.writeBuffer?.length ?? 0) > 0) return undefined
  const ws = transport.socket as undefined | { readyState?: number, _socket?: Socket, _extensions?: Record<string, unknown> }
  if (transport.name !== 'websocket' || ws === undefined || ws.readyState !== 1) return undefined
  if (ws._extensions !== undefined && Object.keys(ws._extensions).length > 0) return undefined
  const raw = ws._socket
  return raw !== undefined && raw.writable ? raw : undefined
}

/** Whether the connection is an open websocket (one `rawSocketOf` turns down only while Engine.IO is writing to it). */
export function isWebSocket (socket: PeerSocket): boolean {
  return (socket.conn as unknown as EngineSocket).transport.name === 'websocket'
}

/** Output queued for a peer and not yet handed to the kernel: Engine.IO's buffer plus the WebSocket's. */
export function unsentBytes (socket: PeerSocket): number {
  const conn = socket.conn as unknown as EngineSocket
  let bytes = conn.transport.socket?.bufferedAmount ?? 0
  for (const packet of conn.writeBuffer ?? []) {
    const data = packet.data
    if (typeof data === 'string') bytes += data.length
    else if (Buffer.isBuffer(data) || data instanceof ArrayBuffer) bytes += data.byteLength
  }
  return bytes
}

/** An Engine.IO connection as `closeTransports` and `terminate` drive it. */
interface ClosingSocket extends EngineSocket {
  readyState: string
  close: (discard?: boolean) => void
}

/** Cuts a connection, dropping what is queued; nothing if it is closed already. */
function cut (conn: ClosingSocket): void {
  const ws = conn.transport.socket as undefined | { terminate?: () => void }
  if (conn.transport.name === 'websocket' && ws?.terminate !== undefined) ws.terminate()
  else conn.close(true)
}

/** Closes a connection at once, dropping what is queued: for peers that do not read. */
export function terminate (socket: PeerSocket): void {
  cut(socket.conn as unknown as ClosingSocket)
}

/**
 * Closes every open connection of the engine at the transport level, never
 * with a Socket.IO DISCONNECT: socket.io-client 2.x takes a DISCONNECT as
 * final and never comes back, while after a transport close it reconnects
 * and joins again (PROTOCOL.md, "How clients take a server's goodbye").
 *
 * Engine.IO first writes what it holds for each connection; a websocket
 * then gets a close frame after its queued frames, a polling client a
 * `close` packet in its next response. Resolves once every connection and
 * every websocket's TCP socket is closed, or after `patienceMs`, when what is
 * left (peers that do not read, or do not answer the close frame) is cut.
 */
export async function closeTransports (clients: Iterable<unknown>, patienceMs: number): Promise<void> {
  const closing: Array<Promise<void>> = []
  const stragglers: Array<() => void> = []
  for (const client of clients) {
    const conn = client as ClosingSocket
    if (conn.readyState !== 'open' && conn.readyState !== 'opening') continue
    const transport = conn.transport
    const raw = transport.name === 'websocket' ? (transport.socket as undefined | { _socket?: Socket })?._socket : undefined
    closing.push(new Promise((resolve) => { conn.once('close', () => { resolve() }) }))
    if (raw !== undefined && !raw.destroyed) {
      closing.push(new Promise((resolve) => { raw.once('close', () => { resolve() }) }))
      // a sender the relay paused would never read the peer's close frame
      transport.socket?.resume?.()
    }
    stragglers.push(() => { cut(conn) })
    conn.close()
  }
  if (closing.length === 0) return
  let timer: NodeJS.Timeout | undefined
  const patience = new Promise<void>((resolve) => { timer = setTimeout(resolve, patienceMs) })
  await Promise.race([Promise.all(closing), patience])
  clearTimeout(timer)
  for (const cut of stragglers) cut()
}

/** Engine.IO's open connections, kept in a protected record. */
export function engineClients (io: RendezvousServer): unknown[] {
  return Object.values((io.engine as unknown as { clients: Record<string, unknown> }).clients)
}
