/**
 * The messages between the bench (generators.ts) and its load-generator
 * processes (generator.ts), declared once, and the checks each side makes of
 * what arrives: IPC brings whatever the other process sent, typed by nobody.
 */
import type { JoinTally } from './joins.js'

/** Bench → generator process. */
export type ToGenerator =
  /** Connect and join `peers` peers to 127.0.0.1:`port`, `concurrency` at a time, from `sources`; progress, then `joined`. */
  | { type: 'join', port: number, peers: number, concurrency: number, sources: string[] }
  /** The bench's bound or stall: give up on the joins in flight and answer `joined` at once. */
  | { type: 'stop-joining' }
  /** Answer `status` with the same id. */
  | { type: 'status', id: number }

/** What a generator process's peers hold at one moment. */
export interface FleetStatus {
  /** Connections still open. */
  connected: number
  /** Connections that ended without the generator closing them. */
  dropped: number
  /** `ws-peer` announcements received by all of its peers so far. */
  peerMessages: number
  /** Why the dropped ones ended, with their counts. */
  dropReasons: Record<string, number>
}

/** Generator process → bench. */
export type FromGenerator =
  /** Loaded, listening for messages. */
  | { type: 'ready' }
  /** Every PROGRESS_EVERY_MS while joining. */
  | { type: 'progress', joined: number, failed: number }
  /** The join phase is over: its tally, and the fleet as it ended. */
  | { type: 'joined', tally: JoinTally, fleet: FleetStatus }
  | ({ type: 'status', id: number } & FleetStatus)
  | { type: 'failed', error: string }

type Fields = Record<string, unknown>

const isRecord = (value: unknown): value is Fields => typeof value === 'object' && value !== null
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
const isCounts = (value: unknown): value is Record<string, number> => isRecord(value) && Object.values(value).every(isCount)

function isTally (value: unknown): value is JoinTally {
  return isRecord(value) && isCount(value.started) && isCount(value.connectErrors) && isCount(value.joinErrors) && isCounts(value.errors) &&
    Array.isArray(value.latencies) && value.latencies.every((ms) => typeof ms === 'number' && Number.isFinite(ms) && ms >= 0)
}

function isFleetStatus (value: unknown): value is FleetStatus {
  return isRecord(value) && isCount(value.connected) && isCount(value.dropped) && isCount(value.peerMessages) && isCounts(value.dropReasons)
}

export function isToGenerator (value: unknown): value is ToGenerator {
  if (!isRecord(value)) return false
  switch (value.type) {
    case 'join':
      return isCount(value.port) && value.port > 0 && value.port < 65536 && isCount(value.peers) && isCount(value.concurrency) && value.concurrency > 0 &&
        Array.isArray(value.sources) && value.sources.length > 0 && value.sources.every((s) => typeof s === 'string')
    case 'stop-joining': return true
    case 'status': return isCount(value.id)
    default: return false
  }
}

export function isFromGenerator (value: unknown): value is FromGenerator {
  if (!isRecord(value)) return false
  switch (value.type) {
    case 'ready': return true
    case 'progress': return isCount(value.joined) && isCount(value.failed)
    case 'joined': return isTally(value.tally) && isFleetStatus(value.fleet)
    case 'status': return isCount(value.id) && isFleetStatus(value)
    case 'failed': return typeof value.error === 'string'
    default: return false
  }
}
