/**
 * The messages between the relay bench (relay.ts) and its peer processes
 * (relay-peer.ts), declared once, and the checks each side makes of what
 * arrives: IPC brings whatever the other process sent, typed by nobody.
 */

/** One relay: `from` dials `to` and sends `count` chunks of `chunkBytes` bytes. */
export interface PairPlan {
  pair: number
  from: string
  to: string
  chunkBytes: number
  count: number
}

/** Bench → peer process. */
export type ToPeer =
  /** Connect and join a peer for each sender and each receiver; answer `joined`. */
  | { type: 'setup', url: string, senders: PairPlan[], receivers: PairPlan[] }
  /** Each sender dials its receiver and waits until the server accepts its stream; answer `dialed`. */
  | { type: 'dial' }
  /** Each sender sends all its chunks, then the stream's end. */
  | { type: 'go' }

/** Peer process → bench. */
export type FromPeer =
  | { type: 'joined' }
  | { type: 'dialed' }
  /** Every second: the bytes all this process's receivers have received so far. */
  | { type: 'progress', bytes: number }
  /** A receiver's stream ended: what came, and its end (`true` for a clean end, else the error text). */
  | { type: 'received', pair: number, bytes: number, chunks: number, sha256: string, end: true | string }
  | { type: 'failed', error: string }

/** A receiver's report. */
export type Delivered = Extract<FromPeer, { type: 'received' }>

type Fields = Record<string, unknown>

const isRecord = (value: unknown): value is Fields => typeof value === 'object' && value !== null
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0

function isPairPlan (value: unknown): value is PairPlan {
  return isRecord(value) && isCount(value.pair) && typeof value.from === 'string' && typeof value.to === 'string' &&
    isCount(value.chunkBytes) && isCount(value.count)
}

const isPlans = (value: unknown): value is PairPlan[] => Array.isArray(value) && value.every(isPairPlan)

export function isToPeer (value: unknown): value is ToPeer {
  if (!isRecord(value)) return false
  switch (value.type) {
    case 'setup': return typeof value.url === 'string' && isPlans(value.senders) && isPlans(value.receivers)
    case 'dial':
    case 'go': return true
    default: return false
  }
}

export function isFromPeer (value: unknown): value is FromPeer {
  if (!isRecord(value)) return false
  switch (value.type) {
    case 'joined':
    case 'dialed': return true
    case 'progress': return isCount(value.bytes)
    case 'received':
      return isCount(value.pair) && isCount(value.bytes) && isCount(value.chunks) && typeof value.sha256 === 'string' &&
        (value.end === true || typeof value.end === 'string')
    case 'failed': return typeof value.error === 'string'
    default: return false
  }
}
