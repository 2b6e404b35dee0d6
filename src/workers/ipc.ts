/**
 * The messages between the primary of `--workers` and its workers (Node's
 * IPC channel), typed once and checked where they arrive. The channel also
 * carries sticky's and prom-client's own messages: whatever is not one of
 * these is left to them.
 */

/** Worker → primary. */
export type WorkerMessage =
  /** Serving: hand me connections. */
  | { type: 'rendezvous:ready' }
  /** Draining: hand me no more connections (my clients are coming back for another worker). */
  | { type: 'rendezvous:draining' }
  /** The metrics of all workers, please. */
  | { type: 'rendezvous:metrics', id: number }

/** Primary → worker: the metrics of all workers, or why there are none. */
export type PrimaryMessage =
  | { type: 'rendezvous:metrics', id: number, body: string, contentType: string }
  | { type: 'rendezvous:metrics', id: number, error: string }

function record (raw: unknown): Record<string, unknown> | undefined {
  return typeof raw === 'object' && raw !== null ? raw as Record<string, unknown> : undefined
}

/** A message from a worker, or undefined when it is not one of ours. */
export function parseWorkerMessage (raw: unknown): WorkerMessage | undefined {
  const message = record(raw)
  switch (message?.type) {
    case 'rendezvous:ready': return { type: 'rendezvous:ready' }
    case 'rendezvous:draining': return { type: 'rendezvous:draining' }
    case 'rendezvous:metrics': return typeof message.id === 'number' ? { type: 'rendezvous:metrics', id: message.id } : undefined
    default: return undefined
  }
}

/** A message from the primary, or undefined when it is not one of ours. */
export function parsePrimaryMessage (raw: unknown): PrimaryMessage | undefined {
  const message = record(raw)
  if (message?.type !== 'rendezvous:metrics' || typeof message.id !== 'number') return undefined
  const { id, body, contentType, error } = message
  if (typeof body === 'string' && typeof contentType === 'string') return { type: 'rendezvous:metrics', id, body, contentType }
  return { type: 'rendezvous:metrics', id, error: typeof error === 'string' ? error : 'no answer' }
}
