/**
 * Every message between nodes of a cluster, in one discriminated union, with
 * its encoding and the checks that turn bytes from another node into a typed
 * message. A node's bugs (or another version's) must not reach past this
 * file: a message of an unknown kind, or with a field missing or of the wrong
 * type, is refused here, once, as protocol.ts does for clients.
 *
 * On the wire: the header's length (4 bytes, big-endian), the header as JSON
 * (the message's fields and the sending node), then the relayed bytes of the
 * kinds that carry a chunk.
 */
import { STREAM_EVENT_PREFIX, parseHandshake, type Offer, type StreamEventName } from '../protocol.js'

/** A stream's end as the relay passes it on: clean (`true`) or an error message. */
export type StreamEnd = true | string

/** The dialer's node to the listener's node. */
export type ToListenerNode =
  /** A dial for one of your connections (`sid`). */
  | { t: 'incoming', sid: string, dial: string, from: string, to: string, timeout: number }
  /** Emit this stream control event to your connection. */
  | { t: 'emit', sid: string, event: StreamEventName, value: StreamEnd | null }
  /** A chunk for your connection. */
  | { t: 'write', sid: string, event: StreamEventName, chunk: Buffer }
  /** That many bytes (in all) that you forwarded were taken here. */
  | { t: 'received', sid: string, bytes: number }
  /** Stop, or go on, reading from your connection. */
  | { t: 'pause', sid: string }
  | { t: 'resume', sid: string }
  /** The dial is over, forget it. */
  | { t: 'end', sid: string, dial: string }

/** The listener's node to the dialer's node. */
export type ToDialerNode =
  /** The listener's answer: null accepts the dial. */
  | { t: 'answer', sid: string, dial: string, error: string | null }
  /** The listener accepted a stream, sent a chunk on its own, or ended it. */
  | { t: 'accepted', sid: string, dial: string, name: string }
  | { t: 'chunk', sid: string, dial: string, name: string, chunk: Buffer }
  | { t: 'ended', sid: string, dial: string, name: string, end: StreamEnd }
  /** That many bytes (in all) reached the listener. */
  | { t: 'delivered', sid: string, bytes: number }
  /** The listener is gone or gave up the address. */
  | { t: 'closed', sid: string, dial: string }

/** A join here took `address` from your connection `sid`. */
export interface TakenOver { t: 'taken', address: string, sid: string }

/** A webrtc-star offer or answer for your connection `sid`, which holds `to`. */
export interface Signal { t: 'signal', sid: string, to: string, offer: Offer }

/** To every node: addresses held by the sender (the first `fresh` newly joined), or the sender leaving. */
export type Broadcast =
  | { t: 'announce', addresses: string[], fresh: number }
  | { t: 'gone', node: string }

export type NodeMessage = ToListenerNode | ToDialerNode | TakenOver | Signal | Broadcast
export type Kind = NodeMessage['t']

/** How each field is checked on arrival. */
type FieldType = 'string' | 'count' | 'event' | 'end' | 'end?' | 'error' | 'strings' | 'chunk' | 'offer'

type Fields<K extends Kind> = Omit<Extract<NodeMessage, { t: K }>, 't'>

/** The fields of every kind: a kind or a field left out here does not compile. */
const SCHEMA: { [K in Kind]: { [F in keyof Fields<K>]-?: FieldType } } = {
  incoming: { sid: 'string', dial: 'string', from: 'string', to: 'string', timeout: 'count' },
  emit: { sid: 'string', event: 'event', value: 'end?' },
  write: { sid: 'string', event: 'event', chunk: 'chunk' },
  received: { sid: 'string', bytes: 'count' },
  pause: { sid: 'string' },
  resume: { sid: 'string' },
  end: { sid: 'string', dial: 'string' },
  answer: { sid: 'string', dial: 'string', error: 'error' },
  accepted: { sid: 'string', dial: 'string', name: 'string' },
  chunk: { sid: 'string', dial: 'string', name: 'string', chunk: 'chunk' },
  ended: { sid: 'string', dial: 'string', name: 'string', end: 'end' },
  delivered: { sid: 'string', bytes: 'count' },
  closed: { sid: 'string', dial: 'string' },
  taken: { address: 'string', sid: 'string' },
  signal: { sid: 'string', to: 'string', offer: 'offer' },
  announce: { addresses: 'strings', fresh: 'count' },
  gone: { node: 'string' }
}

/** The kinds the listener's node handles, and those the dialer's node handles. */
const TO_LISTENER_NODE = new Set<Kind>(['incoming', 'emit', 'write', 'received', 'pause', 'resume', 'end'])
const TO_DIALER_NODE = new Set<Kind>(['answer', 'accepted', 'chunk', 'ended', 'delivered', 'closed'])

export function isToListenerNode (message: NodeMessage): message is ToListenerNode {
  return TO_LISTENER_NODE.has(message.t)
}

export function isToDialerNode (message: NodeMessage): message is ToDialerNode {
  return TO_DIALER_NODE.has(message.t)
}

/** The header field naming the sending node (`from` is an address in dials). */
const SENDER = 'sender'
const LENGTH_BYTES = 4

function isKind (value: unknown): value is Kind {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(SCHEMA, value)
}

function valid (type: FieldType, value: unknown): boolean {
  switch (type) {
    case 'string': return typeof value === 'string'
    case 'count': return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
    case 'event': return typeof value === 'string' && value.startsWith(STREAM_EVENT_PREFIX)
    case 'end': return value === true || typeof value === 'string'
    case 'end?': return value === null || value === true || typeof value === 'string'
    case 'error': return value === null || typeof value === 'string'
    case 'strings': return Array.isArray(value) && value.every((item) => typeof item === 'string')
    case 'chunk': return Buffer.isBuffer(value)
    // as a client's: the same checks, once more at this boundary
    case 'offer': return parseHandshake([value]) !== undefined
  }
}

/** A message on the wire, from node `from`. */
export function encodeMessage (from: string, message: NodeMessage): Buffer {
  const { chunk, ...fields } = message as NodeMessage & { chunk?: Buffer }
  const header = Buffer.from(JSON.stringify({ ...fields, [SENDER]: from }))
  const length = Buffer.alloc(LENGTH_BYTES)
  length.writeUInt32BE(header.length)
  return Buffer.concat(chunk === undefined ? [length, header] : [length, header, chunk])
}

/** A message from another node, or why it is refused. */
export function decodeMessage (raw: Buffer): { from: string, message: NodeMessage } | { error: string } {
  if (raw.length < LENGTH_BYTES) return { error: 'too short' }
  const length = raw.readUInt32BE(0)
  if (raw.length < LENGTH_BYTES + length) return { error: 'header cut short' }
  let header: unknown
  try {
    header = JSON.parse(raw.subarray(LENGTH_BYTES, LENGTH_BYTES + length).toString())
  } catch {
    return { error: 'header is not JSON' }
  }
  if (typeof header !== 'object' || header === null) return { error: 'header is not an object' }
  const { [SENDER]: from, t, ...fields } = header as Record<string, unknown>
  if (typeof from !== 'string') return { error: 'no sender' }
  if (!isKind(t)) return { error: `unknown kind ${typeof t === 'string' ? JSON.stringify(t.slice(0, 40)) : typeof t}` }
  const schema: Record<string, FieldType> = SCHEMA[t]
  const rest = raw.subarray(LENGTH_BYTES + length)
  if ('chunk' in schema) fields.chunk = rest
  else if (rest.length > 0) return { error: `${t}: unexpected bytes after the header` }
  // only the fields of the kind go on, each checked; anything else is dropped
  const message: Record<string, unknown> = { t }
  for (const [field, type] of Object.entries(schema)) {
    const value = fields[field]
    if (!valid(type, value)) return { error: `${t}: bad or missing ${field}` }
    message[field] = value
  }
  return { from, message: message as unknown as NodeMessage }
}
