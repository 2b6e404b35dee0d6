/**
 * Socket.IO wiring: the server options old and new clients need, and the
 * edge where every socket event is checked once and handed to the module that
 * owns it. A handler that throws is logged and answered, never fatal.
 */
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import debug from 'debug'
import { Server } from 'socket.io'
import { SOCKET_IO_PATH, WEBRTC_STAR_SOCKET_IO_PATH } from './constants.js'
import type { ClientAddresses } from './client-addresses.js'
import type { Joins } from './join.js'
import type { Limits } from './limits.js'
import { noteUpgradeResponses, releaseHandshake, tapStreamChunks } from './engine.js'
import { logError } from './log.js'
import { ERRORS, EVENTS, STREAM_EVENT_PREFIX, isRejected, parseDial, parseHandshake, parseJoin, parseLeave, starOf, type Ack, type Chunk, type PeerSocket, type SocketServer, type StreamEventName } from './protocol.js'
import type { Metrics } from './metrics.js'
import type { Relay } from './relay/index.js'
import type { Signalling } from './signalling.js'

const log = debug('rendezvous:socket')

/** The parts each event is handed to, once checked. */
export interface Handlers {
  joins: Pick<Joins, 'join' | 'leave' | 'leaveStar' | 'disconnect'>
  relay: Pick<Relay, 'dial' | 'onStreamEvent' | 'connectionClosed'>
  /** webrtc-star's offers; undefined when it is off. */
  signalling: Pick<Signalling, 'handshake' | 'refuse'> | undefined
  limits: Pick<Limits, 'opened' | 'closed' | 'allowJoin' | 'allowDial' | 'allowSignal'>
  metrics: Pick<Metrics, 'handlerError' | 'signalled'>
  addresses: Pick<ClientAddresses, 'ofSocket'>
}

export interface SocketConfig {
  maxMessageBytes: number
  pingIntervalMS: number
  pingTimeoutMS: number
  /** Origins browsers may connect from; any when undefined. */
  allowedOrigins?: readonly string[]
  /** Refuse handshakes without an `Origin` header. */
  requireOrigin: boolean
  /** Serve webrtc-star's clients, on `/socket.io-next` too. */
  webrtcStar: boolean
}

/** Handshake requests that came on `/socket.io-next`: only webrtc-star peers join there. */
const onWebrtcStarPath = new WeakSet<IncomingMessage>()
/** The connections of those requests, known after their request is let go of. */
const cameOnWebrtcStarPath = new WeakSet<PeerSocket>()

/**
 * Serves webrtc-star's `/socket.io-next` with the same Engine.IO server as
 * `/socket.io`: its requests are handed on as requests of `/socket.io`.
 * Registered ahead of Engine.IO's own listeners, which read the path.
 */
function serveWebrtcStarPath (http: HttpServer): void {
  const prefix = `${WEBRTC_STAR_SOCKET_IO_PATH}/`
  const rewrite = (req: IncomingMessage): void => {
    if (req.url?.startsWith(prefix) !== true) return
    onWebrtcStarPath.add(req)
    req.url = `${SOCKET_IO_PATH}/${req.url.slice(prefix.length)}`
  }
  http.prependListener('request', rewrite)
  http.prependListener('upgrade', rewrite)
}

/**
 * Why a handshake's `Origin` is refused, if it is. Browsers send `Origin`
 * on polling requests and on the WebSocket upgrade; Node.js peers send none,
 * which is allowed unless `requireOrigin`. CORS alone would not do: it only
 * hides answers from a page, and a WebSocket upgrade ignores it.
 */
export function originRefusal (req: IncomingMessage, config: Pick<SocketConfig, 'allowedOrigins' | 'requireOrigin'>): string | undefined {
  const origin = req.headers.origin
  if (origin === undefined) return config.requireOrigin ? ERRORS.ORIGIN_REQUIRED : undefined
  if (config.allowedOrigins === undefined || config.allowedOrigins.includes(origin.toLowerCase())) return undefined
  return ERRORS.ORIGIN_NOT_ALLOWED
}

/**
 * @param refusal why a new connection is refused (shutdown has begun, too
 * many from its address), or undefined to accept it
 */
export function createSocketServer (http: HttpServer, config: SocketConfig, refusal: (req: IncomingMessage) => string | undefined): SocketServer {
  const io: SocketServer = new Server(http, {
    path: SOCKET_IO_PATH,
    // socket.io-client 2.x speaks Engine.IO v3
    allowEIO3: true,
    // browsers connect from any origin unless told otherwise, and 2.x polling sends credentials
    cors: { origin: config.allowedOrigins === undefined ? true : [...config.allowedOrigins], credentials: true },
    serveClient: false,
    maxHttpBufferSize: config.maxMessageBytes,
    pingInterval: config.pingIntervalMS,
    pingTimeout: config.pingTimeoutMS,
    // Engine.IO asks this for handshakes only, not for requests of open sessions
    allowRequest: (req, callback) => {
      const refused = refusal(req)
      if (refused === undefined) callback(null, true)
      else callback(refused, false)
    }
  })
  if (config.webrtcStar) serveWebrtcStarPath(http)
  noteUpgradeResponses(io)
  return io
}

/** Answers `ack` with an error string if it is a function; otherwise the error is only logged. */
function refuse (socket: PeerSocket, event: string, ack: Ack | undefined, error: string): void {
  log('[%s] %s refused: %s', socket.id, event, error)
  if (ack !== undefined) ack(error)
}

function failed (socket: PeerSocket, event: string, ack: unknown, err: unknown, metrics: Handlers['metrics']): void {
  logError('[%s] %s handler failed: %O', socket.id, event, err)
  metrics.handlerError(event)
  if (typeof ack === 'function') {
    try { (ack as Ack)(ERRORS.INTERNAL) } catch {}
  }
}

/** A connection's event listener: Socket.IO calls it with the connection as `this`. */
type Listener = (this: PeerSocket, ...args: unknown[]) => void

/**
 * Wraps a handler so that an exception, thrown or rejected, is logged with
 * the connection id, counted, and answered on the event's ack, if it has one.
 */
function guarded (event: string, metrics: Handlers['metrics'], handler: (socket: PeerSocket, args: unknown[]) => void | Promise<void>): Listener {
  return function (this: PeerSocket, ...args: unknown[]): void {
    try {
      const done = handler(this, args)
      if (done !== undefined) done.catch((err: unknown) => { failed(this, event, args[args.length - 1], err, metrics) })
    } catch (err) {
      failed(this, event, args[args.length - 1], err, metrics)
    }
  }
}

/**
 * The listeners every connection is given, made once: Socket.IO calls each
 * with its connection as `this`, so that a connection holds no closures of
 * its own (what an idle peer costs is mostly per-connection objects).
 */
function listenersOf ({ joins, relay, signalling, limits, metrics }: Handlers): Record<'join' | 'leave' | 'dial' | 'handshake' | 'any' | 'disconnect', Listener> {
  const join = guarded(EVENTS.JOIN, metrics, async (socket, args) => {
    const request = parseJoin(args)
    if (isRejected(request)) return refuse(socket, EVENTS.JOIN, request.ack, ERRORS.INVALID_REQUEST)
    if (request.star !== 'webrtc-star' && cameOnWebrtcStarPath.has(socket)) return refuse(socket, EVENTS.JOIN, request.ack, ERRORS.INVALID_MULTIADDR)
    if (!limits.allowJoin(socket)) return refuse(socket, EVENTS.JOIN, request.ack, ERRORS.RATE_LIMITED)
    await joins.join(socket, request)
  })

  const leave = guarded(EVENTS.LEAVE, metrics, (socket, args) => {
    // webrtc-star's older clients leave without saying which address
    if (args.length === 0 && signalling !== undefined) { joins.leaveStar(socket, 'webrtc-star'); return }
    const address = parseLeave(args)
    if (address === undefined) return refuse(socket, EVENTS.LEAVE, undefined, ERRORS.INVALID_REQUEST)
    joins.leave(socket, address)
  })

  const dial = guarded(EVENTS.DIAL, metrics, async (socket, args) => {
    const request = parseDial(args)
    if (isRejected(request)) return refuse(socket, EVENTS.DIAL, request.ack, ERRORS.INVALID_REQUEST)
    if (!limits.allowDial(socket)) return refuse(socket, EVENTS.DIAL, request.ack, ERRORS.RATE_LIMITED)
    // a webrtc-star peer has no relayed streams: it is dialed over WebRTC
    if (starOf(request.to) === 'webrtc-star') return refuse(socket, EVENTS.DIAL, request.ack, ERRORS.PEER_NOT_FOUND)
    await relay.dial(socket, request)
  })

  const handshake = guarded(EVENTS.HANDSHAKE, metrics, async (socket, args) => {
    if (signalling === undefined) return refuse(socket, EVENTS.HANDSHAKE, undefined, ERRORS.WEBRTC_STAR_OFF)
    const offer = parseHandshake(args)
    if (offer === undefined) {
      metrics.signalled('refused')
      return refuse(socket, EVENTS.HANDSHAKE, undefined, ERRORS.INVALID_REQUEST)
    }
    if (!limits.allowSignal(socket)) { signalling.refuse(socket, offer, ERRORS.RATE_LIMITED); return }
    await signalling.handshake(socket, offer)
  })

  // one listener for every relayed stream of a connection: the relay
  // finds the stream by name, so nothing here grows with the number of dials
  const streamEvent = (socket: PeerSocket, event: unknown, args: unknown[]): void => {
    if (typeof event !== 'string' || !event.startsWith(STREAM_EVENT_PREFIX)) return
    // a connection that relays: its chunks skip Engine.IO's and Socket.IO's decoding from now on
    tapStreamChunks(socket, deliverTapped)
    try {
      relay.onStreamEvent(socket, event, args)
    } catch (err) {
      failed(socket, event, undefined, err, metrics)
    }
  }
  // a chunk the tap took, handed on as Socket.IO would have delivered it
  const deliverTapped = (socket: PeerSocket, event: StreamEventName, chunk: Chunk): void => { streamEvent(socket, event, [chunk]) }

  return {
    join,
    leave,
    dial,
    handshake,
    any (event, ...args) { streamEvent(this, event, args) },
    disconnect (reason) {
      log('[%s] disconnected: %s', this.id, reason)
      try {
        relay.connectionClosed(this)
        joins.disconnect(this)
        limits.closed(this)
      } catch (err) {
        logError('[%s] cleanup after disconnect failed: %O', this.id, err)
      }
    }
  }
}

export function wireSockets (io: SocketServer, handlers: Handlers): void {
  const listeners = listenersOf(handlers)
  const { limits, addresses } = handlers
  io.on('connection', (socket) => {
    // what is needed of the handshake request, read (and kept) before it is let go of
    const address = addresses.ofSocket(socket)
    if (onWebrtcStarPath.has(socket.request)) cameOnWebrtcStarPath.add(socket)
    releaseHandshake(socket)
    // Socket.IO puts each socket in a room of its own id; nothing here sends to a room by id, and the room is a set a peer
    void socket.leave(socket.id)
    log('[%s] connected over %s from %s', socket.id, socket.conn.transport.name, address)
    limits.opened(socket)
    socket.on(EVENTS.JOIN, listeners.join)
    socket.on(EVENTS.LEAVE, listeners.leave)
    socket.on(EVENTS.DIAL, listeners.dial)
    socket.on(EVENTS.HANDSHAKE, listeners.handshake)
    socket.onAny(listeners.any)
    socket.on('disconnect', listeners.disconnect)
  })
}

/** Event listeners on all sockets together: flat however many dials run (for leak checks). */
export function countListeners (io: SocketServer): number {
  let n = 0
  for (const socket of io.sockets.sockets.values()) {
    for (const event of socket.eventNames()) n += socket.listenerCount(event)
    n += socket.listenersAny().length
  }
  return n
}
