/**
 * Engine.IO and `ws` internals, in one place. Socket.IO has no public API for
 * what the relay and the fan-out need below it, so this is the one file that
 * reaches into Engine.IO's connections and transports; everything else uses
 * the functions and the small `Flow` class exported here.
 *
 * - Unsent output: what Engine.IO holds in its write buffer plus what the
 *   WebSocket has not handed to the kernel (`unsentBytes`), one definition for
 *   the relay's backpressure, the limits and the fan-out.
 * - Flow control (`Flow`): when output drains, and pausing reads from a peer.
 *   A websocket is paused through `ws`'s `pause()`/`resume()`; a polling
 *   connection's next data request (HTTP POST) is held until resume. The
 *   client sends one POST at a time, so holding it stops the sender exactly
 *   as a closed TCP window would.
 * - The raw TCP socket under a websocket, for the fan-out's frames and the
 *   relay's chunks (`rawSocketOf`, `encodeTextFrames`).
 * - The chunk tap (`tapStreamChunks`): a relaying peer's chunks taken out of
 *   its TCP stream ahead of `ws`'s own parser (chunk-frames.ts splits it).
 * - Closing connections at the transport level (`terminate`, `closeTransports`)
 *   and the engine's own connection list and events (`engineConnections`,
 *   `onEngineConnection`).
 * - The handshake request of a connection (`requestOf`), from which
 *   client-addresses.ts reads the client's address, and letting go of it
 *   once the connection is made (`releaseHandshake`, `noteUpgradeResponses`).
 * - `--workers`: what @socket.io/sticky and Node's `node:cluster` do not
 *   offer for handing connections to workers (`handOverUnread`,
 *   `closeUntaken`, `holdBack`).
 */
import { EventEmitter } from 'node:events'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Worker } from 'node:cluster'
import { Socket } from 'node:net'
import * as ws from 'ws'
import type { ClientAddresses } from './client-addresses.js'
import { ChunkFrames, OPCODE } from './chunk-frames.js'
import { HEARTBEAT_HOLD_MS } from './constants.js'
import { ChunkParts, wholeChunk, type Chunk, type PeerSocket, type SocketServer, type StreamEventName } from './protocol.js'

/** The parts of Engine.IO's transports used here. */
interface Transport extends EventEmitter {
  name: string
  writable?: boolean
  socket?: RawWebSocket
  onDataRequest?: (req: IncomingMessage, res: ServerResponse) => void
}

/** The `ws` WebSocket under a websocket transport. */
interface RawWebSocket extends EventEmitter {
  bufferedAmount?: number
  readyState?: number
  pause?: () => void
  resume?: () => void
  terminate?: () => void
  _socket?: Socket
  _extensions?: Record<string, unknown>
  _receiver?: RawReceiver
}

/** Where `ws`'s parser of a WebSocket's incoming frames stands (lib/receiver.js). */
interface RawReceiver {
  _state: number
  /** Inside its parsing loop. */
  _loop: boolean
  /** The opcode of a fragmented message in progress, or 0. */
  _fragmented: number
  _opcode: number
  _payloadLength: number
  _bufferedBytes: number
  _maxPayload: number
  /** ws 8.21: the reads it holds at once at most (0: no bound). */
  _maxBufferedChunks?: number
  _writableState: { length: number }
}

/** An Engine.IO connection (`socket.conn`). */
interface EngineSocket extends EventEmitter {
  transport: Transport
  readyState: string
  /** The handshake request, until `releaseHandshake` lets go of it. */
  request: IncomingMessage | null
  /** Closes the connection when the peer's heartbeat is late. */
  pingTimeoutTimer?: NodeJS.Timeout | null
  /** Engine.IO 4: whether a packet has put off the current ping's deadline already. */
  hasRefreshedPingTimeout?: boolean
  /** Packets Engine.IO holds until the transport can take them. */
  writeBuffer?: Array<{ data?: unknown }>
  /** The Engine.IO protocol revision the client speaks: 3 (socket.io-client 2.x) or 4. */
  protocol: number
  close: (discard?: boolean) => void
}

function engineOf (socket: PeerSocket): EngineSocket {
  return socket.conn as unknown as EngineSocket
}

/**
 * Output queued for a peer and not yet handed to the kernel: Engine.IO's
 * write buffer plus the WebSocket's. The buffer is nearly always empty on a
 * websocket (Engine.IO hands packets on at once); on a polling connection it
 * is what waits for the client's next request.
 */
export function unsentBytes (socket: PeerSocket): number {
  const conn = engineOf(socket)
  let bytes = conn.transport.socket?.bufferedAmount ?? 0
  const buffer = conn.writeBuffer
  if (buffer === undefined) return bytes
  for (const packet of buffer) {
    const data = packet.data
    if (typeof data === 'string') bytes += data.length
    else if (Buffer.isBuffer(data) || data instanceof ArrayBuffer) bytes += data.byteLength
  }
  return bytes
}

/** Flow control on one connection: its unsent output, when it drains, and pausing reads from it. */
export class Flow {
  private paused = false
  private held: Array<[IncomingMessage, ServerResponse]> = []
  private heartbeatHold: NodeJS.Timeout | undefined
  private transport: Transport
  private readonly onDrain = (): void => { this.drained() }
  private readonly onUpgrade = (transport: Transport): void => { this.attach(transport) }
  /** The TCP socket written to directly, watched for its drain (its output bypasses Engine.IO's). */
  private raw: Socket | undefined
  /**
   * What goes ahead of the last chunk's bytes, ready to write: the header
   * frame, the attachment frame's header and Engine.IO 3's type byte. A
   * stream sends many chunks under one name, mostly of one length.
   */
  private prefix: { event: string, frame: Buffer, length: number, bytes: Buffer } | undefined
  /** Whether `raw` is corked until the end of this turn, gathering its chunks into one write. */
  private corked = false
  private readonly uncork = (): void => {
    this.corked = false
    this.raw?.uncork()
  }
  /** Engine.IO 3 (socket.io-client 2.x) puts a type byte ahead of binary data; fixed at the handshake. */
  private readonly eio3: boolean

  /**
   * @param drained called whenever queued output may have shrunk
   */
  constructor (private readonly socket: PeerSocket, private readonly drained: () => void) {
    const conn = engineOf(socket)
    this.eio3 = conn.protocol === 3
    this.transport = conn.transport
    conn.on('drain', this.onDrain)
    conn.on('upgrade', this.onUpgrade)
    this.transport.on('drain', this.onDrain)
  }

  /** Bytes written to this peer that have not reached the kernel yet. */
  get backlog (): number {
    return unsentBytes(this.socket)
  }

  get isPaused (): boolean {
    return this.paused
  }

  /** Emits a control event of a relayed stream (`accept`, or `error` with how it ended). */
  emit (event: `socket.io-pull-stream.${string}`, ...args: Array<true | string>): void {
    this.socket.emit(event, ...args)
  }

  /**
   * Emits `event` with a binary chunk of a relayed stream. On an idle open
   * websocket the two frames of the Socket.IO packet (its text header, then
   * the chunk as an attachment) go straight to the TCP socket, as Socket.IO
   * would have framed them: the chunk's bytes behind one prefix, which is
   * made again only when the event or the length changes, and the bytes
   * themselves never copied. Anything else goes through Socket.IO.
   */
  write (event: `socket.io-pull-stream.${string}`, chunk: Chunk): void {
    const raw = rawSocketOf(this.socket)
    if (raw === undefined) {
      this.socket.emit(event, wholeChunk(chunk))
      return
    }
    if (raw !== this.raw) this.watch(raw)
    let prefix = this.prefix
    if (prefix?.event !== event || prefix.length !== chunk.length) {
      const frame = prefix?.event === event ? prefix.frame : binaryEventHeader(event)
      prefix = { event, frame, length: chunk.length, bytes: Buffer.concat([frame, attachmentPrefix(chunk.length, this.eio3)]) }
      this.prefix = prefix
    }
    // the chunks of one turn (one read from the sender holds many small ones) leave in one write;
    // whatever else is written to the socket meanwhile stays in order among them
    if (!this.corked) {
      this.corked = true
      raw.cork()
      process.nextTick(this.uncork)
    }
    raw.write(prefix.bytes)
    if (chunk instanceof ChunkParts) for (const part of chunk.parts) raw.write(part)
    else raw.write(chunk)
  }

  /** Stops reading from this peer until `resume`. */
  pause (): void {
    if (this.paused) return
    this.paused = true
    this.pauseTransport(this.transport)
    // while not read, the peer's heartbeats wait unread in the socket: its
    // silence is our doing, so its deadline is held off until resume
    const conn = engineOf(this.socket)
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
    this.unwatch()
    this.raw = undefined
    const conn = engineOf(this.socket)
    conn.off('drain', this.onDrain)
    conn.off('upgrade', this.onUpgrade)
    this.transport.off('drain', this.onDrain)
    this.restorePolling(this.transport)
    clearInterval(this.heartbeatHold)
    for (const [, res] of this.held) res.destroy()
    this.held = []
  }

  /** Output written to `raw` drains on its own: hear it, as Engine.IO's drain. */
  private watch (raw: Socket): void {
    this.unwatch()
    this.raw = raw
    raw.on('drain', this.onDrain)
  }

  /** Lets go of the TCP socket written to directly: what this turn corked leaves now. */
  private unwatch (): void {
    if (this.corked) this.raw?.uncork()
    this.corked = false
    this.raw?.off('drain', this.onDrain)
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

/** Connections whose relayed chunks are tapped. */
const tapped = new WeakSet<PeerSocket>()

/** `ws`'s parser states (lib/receiver.js): between frames, and reading a payload. */
const RECEIVER_GET_INFO = 0
const RECEIVER_GET_DATA = 4

/**
 * How many bytes of a frame begun `ws`'s parser still wants, if it stands
 * where the tap may take over: between frames with nothing buffered, or in a
 * frame's payload (whose rest it is owed), never in a fragmented message or
 * after a close. Undefined when not (inside a frame's header: rare, and the
 * next stream event tries again).
 */
function bytesOwed (receiver: RawReceiver): number | undefined {
  if (receiver._loop || receiver._fragmented !== 0 || receiver._opcode === OPCODE.CLOSE || receiver._writableState.length > 0) return undefined
  if (receiver._state === RECEIVER_GET_INFO) return receiver._bufferedBytes === 0 ? 0 : undefined
  if (receiver._state === RECEIVER_GET_DATA) return receiver._payloadLength - receiver._bufferedBytes
  return undefined
}

/**
 * Takes a websocket peer's relayed chunks out of its TCP stream before `ws`,
 * Engine.IO and Socket.IO decode them (chunk-frames.ts), and hands them to
 * `deliver` as Socket.IO would have: its connection, the event's name and the chunk, on the
 * next tick (Socket.IO delivers every event on the next tick, so the order
 * among a connection's stream events stays as it was). Every other byte goes
 * on to `ws` unchanged and in order.
 *
 * Tried by each stream event Socket.IO delivers until it is in place, so an
 * idle peer carries none of it: only on an open websocket (a polling
 * connection, when it has upgraded), and only where `ws`'s parser stands at a
 * frame's edge or in its payload. It ends with the TCP socket.
 */
export function tapStreamChunks (socket: PeerSocket, deliver: (socket: PeerSocket, event: StreamEventName, chunk: Chunk) => void): void {
  if (tapped.has(socket)) return
  const conn = engineOf(socket)
  const { transport } = conn
  const ws = transport.socket
  if (transport.name !== 'websocket' || ws?.readyState !== 1) return
  const raw = ws._socket
  const receiver = ws._receiver
  if (raw === undefined || receiver === undefined) return
  if (hasExtensions(ws)) return
  const listeners = raw.listeners('data') as Array<(data: Buffer) => void>
  // anything but `ws`'s one listener is not what this was written for
  if (listeners.length !== 1) return
  const owed = bytesOwed(receiver)
  if (owed === undefined) return
  const [original] = listeners
  tapped.add(socket)
  const frames = new ChunkFrames({
    pass: (bytes) => { original.call(raw, bytes) },
    chunk: (event, chunk) => {
      heard(conn)
      process.nextTick(deliver, socket, event, chunk)
    },
    open: () => conn.readyState === 'open' && socket.connected
  }, { eio3: conn.protocol === 3, maxPayload: receiver._maxPayload, maxHeldReads: receiver._maxBufferedChunks ?? 0, owed })
  raw.removeListener('data', original)
  raw.on('data', (data: Buffer) => { frames.push(data) })
}

/**
 * What Engine.IO does on any incoming packet, for the packets it no longer
 * sees: with Engine.IO 4, a packet while its ping waits for the pong puts the
 * pong's deadline off, once per ping (a sender busy with data may have its
 * pong queued behind it). Engine.IO 3 clients' own pings keep them alive.
 */
function heard (conn: EngineSocket): void {
  if (conn.protocol === 3 || conn.pingTimeoutTimer == null || conn.hasRefreshedPingTimeout === true) return
  conn.pingTimeoutTimer.refresh()
  conn.hasRefreshedPingTimeout = true
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
  const conn = engineOf(socket)
  const transport = conn.transport
  if (transport.writable !== true || (conn.writeBuffer?.length ?? 0) > 0) return undefined
  const ws = transport.socket
  if (transport.name !== 'websocket' || ws === undefined || ws.readyState !== 1) return undefined
  if (hasExtensions(ws)) return undefined
  const raw = ws._socket
  return raw !== undefined && raw.writable ? raw : undefined
}

/** Whether the WebSocket negotiated an extension (permessage-deflate): looked at for every chunk, so without a list of keys. */
function hasExtensions (ws: RawWebSocket): boolean {
  for (const name in ws._extensions) if (Object.hasOwn(ws._extensions, name)) return true
  return false
}

/** Whether the connection is an open websocket (one `rawSocketOf` turns down only while Engine.IO is writing to it). */
export function isWebSocket (socket: PeerSocket): boolean {
  return engineOf(socket).transport.name === 'websocket'
}

/** The Engine.IO transport a connection uses now: `websocket` or `polling`. */
export function transportOf (socket: PeerSocket): string {
  return engineOf(socket).transport.name
}

/** Consecutive frames in one buffer: frame i spans [offsets[i], offsets[i + 1]). */
export interface Frames {
  buffer: Buffer
  offsets: number[]
}

interface FrameOptions { fin: boolean, opcode: number, mask: boolean, readOnly: boolean, rsv1: boolean }
/** `ws`'s frame encoder, which @types/ws leaves out: it returns the header, then the data. */
const { Sender } = ws as unknown as { Sender: { frame: (data: Buffer, options: FrameOptions) => Buffer[] } }
const TEXT_FRAME: FrameOptions = { fin: true, opcode: OPCODE.TEXT, mask: false, readOnly: false, rsv1: false }

const EIO3_MESSAGE = Buffer.from([4])

/** The attachment frame's header for a chunk of `length` bytes, and Engine.IO 3's type byte (4, message) ahead of the bytes. */
function attachmentPrefix (length: number, eio3: boolean): Buffer {
  const header = frameHeader(OPCODE.BINARY, length + (eio3 ? 1 : 0))
  return eio3 ? Buffer.concat([header, EIO3_MESSAGE]) : header
}

/**
 * The header of an unmasked, final WebSocket frame of `length` bytes, as a
 * server sends it (RFC 6455, 5.2), for a payload written in parts: `ws`'s
 * encoder wants the payload whole, and joining a chunk to its one-byte
 * Engine.IO 3 prefix would copy it.
 */
export function frameHeader (opcode: number, length: number): Buffer {
  if (length < 126) return Buffer.from([0x80 | opcode, length])
  if (length < 0x10000) {
    const header = Buffer.allocUnsafe(4)
    header[0] = 0x80 | opcode
    header[1] = 126
    header.writeUInt16BE(length, 2)
    return header
  }
  const header = Buffer.allocUnsafe(10)
  header[0] = 0x80 | opcode
  header[1] = 127
  header.writeBigUInt64BE(BigInt(length), 2)
  return header
}

/**
 * The text frame that opens a Socket.IO binary event with one attachment, as
 * socket.io-parser and Engine.IO write it for the main namespace:
 * `4` (message) `5` (binary event) `1-` (one attachment), then the event
 * name and the attachment's placeholder.
 */
export function binaryEventHeader (event: string): Buffer {
  const payload = Buffer.from(`451-${JSON.stringify([event, { _placeholder: true, num: 0 }])}`)
  const [header] = Sender.frame(payload, TEXT_FRAME)
  return Buffer.concat([header, payload])
}

/**
 * Unmasked, final WebSocket text frames (as a server sends them), one per
 * payload, with headers from `ws`'s own encoder.
 */
export function encodeTextFrames (payloads: readonly Buffer[]): Frames {
  const parts: Buffer[] = []
  const offsets = [0]
  let at = 0
  for (const payload of payloads) {
    const header = Sender.frame(payload, TEXT_FRAME)[0]
    parts.push(header, payload)
    at += header.length + payload.length
    offsets.push(at)
  }
  return { buffer: Buffer.concat(parts, at), offsets }
}

/** Cuts a connection, dropping what is queued; nothing if it is closed already. */
function cut (conn: EngineSocket): void {
  const ws = conn.transport.socket
  if (conn.transport.name === 'websocket' && ws?.terminate !== undefined) ws.terminate()
  else conn.close(true)
}

/** Closes a connection at once, dropping what is queued: for peers that do not read. */
export function terminate (socket: PeerSocket): void {
  cut(engineOf(socket))
}

/** Engine.IO's open connections, kept in a protected record. */
function engineConnections (io: SocketServer): EngineSocket[] {
  return Object.values((io.engine as unknown as { clients: Record<string, EngineSocket> }).clients)
}

/**
 * The Engine.IO handshake request of a connection (its headers and TCP
 * peer), or undefined once `releaseHandshake` has let go of it.
 */
export function requestOf (socket: PeerSocket): IncomingMessage | undefined {
  return engineOf(socket).request ?? undefined
}

/** The Engine.IO connection under a socket: the same object for the socket's life, a key for what is known of it. */
export function connectionOf (socket: PeerSocket): object {
  return engineOf(socket)
}

/**
 * Engine.IO's stand-in for the response to a WebSocket handshake or upgrade
 * (its `WebSocketResponse`, for middlewares): it keeps the request for the
 * connection's life, through a `close` listener on the TCP socket. Held here
 * by TCP socket from the request until the connection is made.
 */
const upgradeResponses = new WeakMap<object, { req: IncomingMessage | null }>()

/**
 * Notes each WebSocket request's stand-in response, so that `releaseHandshake`
 * can unlink it from its request: a middleware, Engine.IO's public way to
 * see the response of every request.
 */
export function noteUpgradeResponses (io: SocketServer): void {
  io.engine.use((req: IncomingMessage, res: unknown, next: () => void) => {
    if (!(res instanceof ServerResponse)) upgradeResponses.set(req.socket, res as { req: IncomingMessage | null })
    next()
  })
}

/** Unlinks the stand-in response of the WebSocket under `conn`, if there is one, from its request. */
function releaseUpgradeResponse (conn: EngineSocket): void {
  const raw = conn.transport.socket?._socket
  if (raw === undefined) return
  const res = upgradeResponses.get(raw)
  if (res === undefined) return
  res.req = null
  upgradeResponses.delete(raw)
}

/** Engine.IO calls it with the connection as `this` once a polling connection has moved to its WebSocket. */
function upgraded (this: EngineSocket): void {
  releaseUpgradeResponse(this)
}

/** What a socket's handshake shows of the request's headers and query once the request is let go of: none, and one object for all. */
const NO_HEADERS = Object.freeze({})
const NO_QUERY = Object.freeze({})

/**
 * Lets go of a connected socket's handshake request: its headers, raw
 * headers and stream state, more than a kilobyte a peer, with Socket.IO's
 * copy of its headers and query in `socket.handshake` (Socket.IO's own advice
 * for saving memory), and the request of the WebSocket it runs on or moves
 * to. Whatever the server needs of the request (the client's address, the
 * path it came on) is read before.
 */
export function releaseHandshake (socket: PeerSocket): void {
  const conn = engineOf(socket)
  conn.request = null
  const { time, address, xdomain, secure, issued, auth } = socket.handshake
  ;(socket as { handshake: PeerSocket['handshake'] }).handshake = { time, address, xdomain, secure, issued, auth, headers: NO_HEADERS, query: NO_QUERY, url: '' }
  if (conn.transport.name === 'websocket') releaseUpgradeResponse(conn)
  else conn.once('upgrade', upgraded)
}

/**
 * Calls `opened` with the client's address of every Engine.IO connection as
 * it starts (before Socket.IO sees it, so that a handshake can be refused on
 * its count), and `closed` with the same address when it ends.
 */
export function onEngineConnection (io: SocketServer, addresses: Pick<ClientAddresses, 'of'>, opened: (address: string) => void, closed: (address: string) => void): void {
  io.engine.on('connection', (conn: EngineSocket) => {
    // a new connection's request is there until Socket.IO has connected it
    const ip = conn.request === null ? '' : addresses.of(conn.request)
    opened(ip)
    conn.once('close', () => { closed(ip) })
  })
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
export async function closeTransports (io: SocketServer, patienceMs: number): Promise<void> {
  const closing: Array<Promise<void>> = []
  const stragglers: EngineSocket[] = []
  for (const conn of engineConnections(io)) {
    if (conn.readyState !== 'open' && conn.readyState !== 'opening') continue
    const transport = conn.transport
    const raw = transport.name === 'websocket' ? transport.socket?._socket : undefined
    closing.push(new Promise((resolve) => { conn.once('close', () => { resolve() }) }))
    if (raw !== undefined && !raw.destroyed) {
      closing.push(new Promise((resolve) => { raw.once('close', () => { resolve() }) }))
      // a sender the relay paused would never read the peer's close frame
      transport.socket?.resume?.()
    }
    stragglers.push(conn)
    conn.close()
  }
  if (closing.length === 0) return
  let timer: NodeJS.Timeout | undefined
  const patience = new Promise<void>((resolve) => { timer = setTimeout(resolve, patienceMs) })
  await Promise.race([Promise.all(closing), patience])
  clearTimeout(timer)
  for (const conn of stragglers) cut(conn)
}

// -- --workers: handing connections to worker processes ---------------------

/**
 * sticky reads a request's first bytes, then sends the connection to a
 * worker. Node goes on reading it until the worker has acknowledged it and
 * throws away what it reads meanwhile: a client quick to send its next
 * message (a websocket's Socket.IO connect) would lose it and hang. So the
 * primary stops reading a connection as it sends it; the worker reads the rest.
 */
export function handOverUnread (worker: Worker): void {
  const send = worker.send.bind(worker) as (...args: unknown[]) => boolean
  worker.send = ((...args: unknown[]) => {
    const connection = args[1]
    if (connection instanceof Socket) (connection as Socket & { _handle?: { readStop: () => number } | null })._handle?.readStop()
    return send(...args)
  })
}

/**
 * Closes the connections sent to `worker` that it had not taken when it died.
 * Node keeps a connection sent with `send(message, socket)` open in this
 * process until the worker acknowledges it, and nothing closes it if the
 * worker dies first, so its client would wait unanswered (Node 20's
 * lib/internal/child_process.js: the connection on its way is
 * `_pendingMessage.handle`, a native handle its socket gave up; those queued
 * behind it are `_handleQueue[i].handle`, sockets, or null for a message
 * without one). Those are internals, read defensively: anything else there is
 * left alone. Returns how many it closed.
 */
export function closeUntaken (worker: Worker): number {
  type Entry = { handle?: unknown } | null | undefined
  const internals = worker.process as unknown as { _pendingMessage?: Entry, _handleQueue?: Entry[] | null }
  const queued = Array.isArray(internals._handleQueue) ? internals._handleQueue : []
  let closed = 0
  for (const handle of [internals._pendingMessage?.handle, ...queued.map((entry) => entry?.handle)]) {
    if (handle instanceof Socket) handle.destroy()
    else if (typeof (handle as { close?: unknown } | null | undefined)?.close === 'function') (handle as { close: () => void }).close()
    else continue
    closed++
  }
  return closed
}

/**
 * sticky's least-connection picks the worker with the lowest `clientsCount`
 * (a field it keeps on the worker); a worker held back counts this many more,
 * so that no connection is handed to it while it starts or drains.
 */
const HELD_BACK_BIAS = 1e9
const heldBack = new WeakSet<Worker>()

/** Whether sticky may hand connections to `worker`: not while it starts or drains. */
export function holdBack (worker: Worker, held: boolean): void {
  if (heldBack.has(worker) === held) return
  if (held) heldBack.add(worker)
  else heldBack.delete(worker)
  const counted = worker as Worker & { clientsCount?: number }
  counted.clientsCount = (counted.clientsCount ?? 0) + (held ? HELD_BACK_BIAS : -HELD_BACK_BIAS)
}
