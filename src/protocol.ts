/**
 * The wire contract (shared/PROTOCOL.md): event names, their typed maps,
 * every error string, and the checks that turn a socket event's untrusted
 * arguments into typed requests. Everything past this file trusts its input.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Server, Socket } from 'socket.io'
import { MAX_ADDRESS_LENGTH, MAX_DIAL_ID_LENGTH, MAX_INTENT_ID_LENGTH, MAX_JOIN_DATA_LENGTH, MAX_SIGNAL_LENGTH } from './constants.js'

/** Strings sent through acknowledgements. Always strings: an Error JSON-encodes to `{}`. */
export const ERRORS = {
  INVALID_REQUEST: 'Invalid request',
  INVALID_MULTIADDR: 'Invalid multiaddr',
  NO_ID: 'Crypto Challenge required but no Id provided',
  ID_MISMATCH: 'Id is not matching',
  CRYPTO_ERROR: 'Crypto error',
  SIGNATURE_INVALID: 'Signature Invalid',
  TOO_MANY_CHALLENGES: 'Too many pending crypto challenges',
  NOT_AUTHORIZED: 'Not authorized for this address',
  PEER_NOT_FOUND: 'Peer not found',
  DIAL_TIMEOUT: 'Dial timeout',
  DIAL_REFUSED: 'Dial refused',
  DIAL_ID_IN_USE: 'Dial id already in use',
  TOO_MANY_STREAMS: 'Too many relayed streams',
  INVALID_CHUNK: 'Relayed chunks must be binary',
  STREAM_ERROR: 'Stream error',
  RELAY_DATA_LIMIT: 'Relay data limit reached',
  RELAY_DURATION_LIMIT: 'Relay duration limit reached',
  SHUTTING_DOWN: 'Server shutting down',
  SERVER_FULL: 'Server full',
  PEER_NOT_ALLOWED: 'Peer not allowed',
  TOO_MANY_ADDRESSES: 'Too many addresses on this connection',
  RATE_LIMITED: 'Too many requests, slow down',
  TOO_MANY_CONNECTIONS: 'Too many connections from this address',
  ORIGIN_NOT_ALLOWED: 'Origin not allowed',
  ORIGIN_REQUIRED: 'Origin required',
  WEBRTC_STAR_OFF: 'webrtc-star signalling is off on this server',
  // webrtc-star's own string (its clients show it), in the offer's `err`
  PEER_NOT_AVAILABLE: 'peer is not available',
  INTERNAL: 'Internal server error'
} as const

export type ErrorString = typeof ERRORS[keyof typeof ERRORS]

/** What the server answers through an acknowledgement: an error string or null, then results. */
export type Ack = (err: string | null, ...results: unknown[]) => void

export const EVENTS = {
  JOIN: 'ss-join',
  LEAVE: 'ss-leave',
  DIAL: 'ss-dial',
  PEER: 'ws-peer',
  // spelt with a double m on the wire
  INCOMING: 'ss-incomming',
  // webrtc-star signalling: an offer or answer in, the same passed on
  HANDSHAKE: 'ss-handshake',
  SIGNAL: 'ws-handshake'
} as const

/**
 * The two transports served. A peer's kind is its address's: webrtc-star
 * addresses name `p2p-webrtc-star`; every other address is websocket-star.
 */
export type Star = 'websocket-star' | 'webrtc-star'
export const STARS: readonly Star[] = ['websocket-star', 'webrtc-star']

export function starOf (address: string): Star {
  return address.includes('/p2p-webrtc-star') ? 'webrtc-star' : 'websocket-star'
}

/** Prefix of the relayed-stream sub-protocol's events (socket.io-pull-stream). */
export const STREAM_EVENT_PREFIX = 'socket.io-pull-stream.'

export type StreamEventName = `socket.io-pull-stream.${string}`

/**
 * A relayed chunk in the pieces it arrived in: a websocket frame spans socket
 * reads, and joining them would copy it. Made only by the chunk tap
 * (chunk-frames.ts), never decoded from the network.
 */
export class ChunkParts {
  constructor (readonly parts: readonly Buffer[], readonly length: number) {}
}

/** A relayed chunk's bytes: whole, or in parts. */
export type Chunk = Buffer | ChunkParts

/** A chunk's bytes in one buffer (copied only if it is in parts). */
export function wholeChunk (chunk: Chunk): Buffer {
  return chunk instanceof ChunkParts ? Buffer.concat(chunk.parts, chunk.length) : chunk
}

/**
 * Client → server. Arguments arrive untyped from the network: they are
 * `unknown` here and become typed requests in the parse functions below.
 */
export interface ClientToServerEvents {
  'ss-join': (...args: unknown[]) => void
  'ss-leave': (...args: unknown[]) => void
  'ss-dial': (...args: unknown[]) => void
  'ss-handshake': (...args: unknown[]) => void
}

/** Server → client. */
export interface ServerToClientEvents {
  'ws-peer': (address: string) => void
  'ss-incomming': (dialId: string, from: string, ack: (...answer: unknown[]) => void) => void
  'ws-handshake': (offer: Offer) => void
  [stream: StreamEventName]: (...args: unknown[]) => void
}

export interface JoinRequest {
  address: string
  multiaddr: Multiaddr
  star: Star
  /** The peer id written in the address: the text after its last `/ipfs/` or `/p2p/`. */
  peerId: string
  /** Hex public key, hex signature, or empty (always empty for webrtc-star, whose join is the address alone). */
  data: string
  ack: Ack | undefined
}

/**
 * webrtc-star's `ss-handshake` and `ws-handshake`: one WebRTC signal (an SDP
 * offer or answer, or an ICE candidate) of the dial `intentId`, from the
 * dialer's address to the listener's (`answer` unset) or back (`answer`
 * true). The server passes these fields on, and only these; an offer it
 * cannot deliver comes back to its sender with `err` set.
 */
export interface Offer {
  intentId: string
  srcMultiaddr: string
  dstMultiaddr: string
  signal: unknown
  answer?: true
  err?: string
}

export interface DialRequest {
  from: string
  to: string
  dialId: string
  ack: Ack
}

/** A request that failed its checks, with the ack to answer `Invalid request` on, if any. */
export interface Rejected {
  invalid: true
  ack: Ack | undefined
}

/** Socket.IO always passes the acknowledgement last, however many arguments came before it. */
function ackOf (args: unknown[]): Ack | undefined {
  const last = args[args.length - 1]
  return typeof last === 'function' ? last as Ack : undefined
}

export function isAddressString (value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ADDRESS_LENGTH
}

/** The peer id of an address, as the old server read it. */
export function peerIdOfAddress (address: string): string {
  const ipfs = address.lastIndexOf('ipfs/')
  const p2p = address.lastIndexOf('p2p/')
  if (ipfs < 0 && p2p < 0) return ''
  return ipfs > p2p ? address.slice(ipfs + 5) : address.slice(p2p + 4)
}

/** `ss-join(address, data, ack)`, or webrtc-star's `ss-join(address)`. */
export function parseJoin (args: unknown[]): JoinRequest | Rejected {
  const [address, data] = args
  const ack = ackOf(args)
  if (!isAddressString(address)) return { invalid: true, ack }
  const star = starOf(address)
  // webrtc-star clients send the address alone, websocket-star ones always a string after it
  const given = star === 'webrtc-star' && (data === undefined || data === ack) ? '' : data
  if (typeof given !== 'string' || given.length > MAX_JOIN_DATA_LENGTH) return { invalid: true, ack }
  let ma: Multiaddr
  try {
    ma = multiaddr(address)
  } catch {
    return { invalid: true, ack }
  }
  return { address, multiaddr: ma, star, peerId: peerIdOfAddress(address), data: given, ack }
}

/** `ss-leave(address)`: the address, or undefined when it is not one. */
export function parseLeave (args: unknown[]): string | undefined {
  return isAddressString(args[0]) ? args[0] : undefined
}

/** `ss-dial(from, to, dialId, ack)`. */
export function parseDial (args: unknown[]): DialRequest | Rejected {
  const [from, to, dialId] = args
  const ack = ackOf(args)
  if (ack === undefined || !isAddressString(from) || !isAddressString(to) ||
      typeof dialId !== 'string' || dialId.length === 0 || dialId.length > MAX_DIAL_ID_LENGTH) {
    return { invalid: true, ack }
  }
  return { from, to, dialId, ack }
}

/**
 * `ss-handshake(offer)`: the offer with its known fields only, or undefined
 * when it is not one. Its signal is an object bounded by the length of its JSON.
 */
export function parseHandshake (args: unknown[]): Offer | undefined {
  const [offer] = args
  if (typeof offer !== 'object' || offer === null || Array.isArray(offer)) return undefined
  const { intentId, srcMultiaddr, dstMultiaddr, signal, answer } = offer as Record<string, unknown>
  if (typeof intentId !== 'string' || intentId.length === 0 || intentId.length > MAX_INTENT_ID_LENGTH) return undefined
  if (!isAddressString(srcMultiaddr) || !isAddressString(dstMultiaddr)) return undefined
  if (answer !== undefined && typeof answer !== 'boolean') return undefined
  // an object (an SDP or a candidate): the clients read `signal.type` of every offer they get
  if (typeof signal !== 'object' || signal === null || Array.isArray(signal) || JSON.stringify(signal).length > MAX_SIGNAL_LENGTH) return undefined
  return { intentId, srcMultiaddr, dstMultiaddr, signal, ...(answer === true ? { answer } : {}) }
}

export function isRejected (request: object): request is Rejected {
  return 'invalid' in request
}

/** Node → node, in cluster mode (through the Redis adapter's `serverSideEmit`). */
export interface ServerSideEvents {
  /** A broadcast from another node, encoded and checked by cluster/messages.ts. */
  'rendezvous:node': (message: unknown) => void
  /** A query of the admin view, checked by admin.ts; each node replies with its own answer. */
  'rendezvous:admin': (query: unknown, reply: (answer: unknown) => void) => void
}

/** The Socket.IO server and sockets, typed by the maps above. */
export type SocketServer = Server<ClientToServerEvents, ServerToClientEvents, ServerSideEvents>
export type PeerSocket = Socket<ClientToServerEvents, ServerToClientEvents, ServerSideEvents>
