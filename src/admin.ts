/**
 * The operator's view, off unless `--adminToken` is set (404 otherwise):
 *
 * - `GET /admin/peers[?limit=N&after=<address>]`: the joined addresses in
 *   address order, a page at a time, each with the connection's age,
 *   transport, client address and relayed bytes, and the node serving it;
 * - `POST /admin/peers/<id>/disconnect`: removes a peer (a peer id in either
 *   form, or one address): its addresses are released, its dials end, and a
 *   connection left holding nothing is disconnected for good (a Socket.IO
 *   disconnect, which old clients do not answer by reconnecting; to keep a
 *   peer out, deny it in the peer policy).
 *
 * Requests carry `Authorization: Bearer <token>`, compared in constant time;
 * anything else gets 401 and is counted as a refusal. The token is never
 * logged. In cluster mode the node asked gathers the other nodes' answers
 * through the cluster (each answers for the connections it serves).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import debug from 'debug'
import { ADMIN_PAGE_DEFAULT, ADMIN_PAGE_MAX } from './constants.js'
import type { Metrics } from './metrics.js'
import { normalisePeerId } from './policy.js'
import { isAddressString, peerIdOfAddress, type PeerSocket } from './protocol.js'
import type { Registry } from './registry.js'

const log = debug('rendezvous:admin')

/** One joined address, as the operator sees it. */
export interface PeerView {
  address: string
  peerId: string
  /** The Socket.IO id of the connection holding it. */
  connection: string
  /** The cluster node serving it; null outside cluster mode. */
  node: string | null
  transport: string
  clientAddress: string
  /** How long the connection has been open, in ms. */
  connectedForMS: number
  /** Bytes relayed to or from the connection since it opened. */
  relayedBytes: number
}

/** An address a removal released, and the node it was on. */
export interface Removal {
  address: string
  node: string | null
}

/** What one node asks the others (node → node, through the cluster). */
export type AdminQuery =
  | { t: 'peers', after: string | null, limit: number }
  | { t: 'disconnect', peer: string }

/** An HTTP request for `/admin/…`, as the routes hand it over. */
export interface AdminRequest {
  method: string
  /** The path, without the query. */
  path: string
  query: URLSearchParams
  authorization: string | undefined
}

export interface AdminAnswer {
  status: number
  body: unknown
  headers?: Record<string, string>
}

/** The other nodes, as the admin view asks them. */
export interface AdminCluster {
  readonly node: string
  /** Every other node's answer to `query` (unchecked), and whether all of them answered in time. */
  ask: (query: AdminQuery) => Promise<{ answers: unknown[], complete: boolean }>
}

export interface AdminComponents {
  registry: Registry<PeerSocket>
  /** Bytes relayed to or from a local connection since it opened. */
  relayedBytesOf: (connectionId: string) => number
  clientAddressOf: (socket: PeerSocket) => string
  transportOf: (socket: PeerSocket) => string
  /** Releases the addresses here that match; returns them with their holders. */
  removePeer: (matches: (address: string) => boolean) => Array<[address: string, socket: PeerSocket]>
  metrics: Pick<Metrics, 'refused'>
  cluster?: AdminCluster
}

const JSON_HEADERS = { 'www-authenticate': 'Bearer realm="rendezvous"' }

function digest (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

function isPeerView (value: unknown): value is PeerView {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.address === 'string' && typeof v.peerId === 'string' && typeof v.connection === 'string' &&
    (typeof v.node === 'string' || v.node === null) && typeof v.transport === 'string' && typeof v.clientAddress === 'string' &&
    typeof v.connectedForMS === 'number' && typeof v.relayedBytes === 'number'
}

function isRemoval (value: unknown): value is Removal {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.address === 'string' && (typeof v.node === 'string' || v.node === null)
}

/** A query from another node, checked; undefined when it is not one. */
export function parseQuery (value: unknown): AdminQuery | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  if (v.t === 'peers' && (v.after === null || isAddressString(v.after)) && typeof v.limit === 'number' && Number.isInteger(v.limit) && v.limit >= 1 && v.limit <= ADMIN_PAGE_MAX) {
    return { t: 'peers', after: v.after, limit: v.limit }
  }
  if (v.t === 'disconnect' && typeof v.peer === 'string' && whom(v.peer) !== undefined) return { t: 'disconnect', peer: v.peer }
  return undefined
}

/** Which addresses `id` names: those of a peer id (either form), or one address; undefined when it is neither. */
function whom (id: string): ((address: string) => boolean) | undefined {
  const peerId = normalisePeerId(id)
  if (peerId !== undefined) return (address) => normalisePeerId(peerIdOfAddress(address)) === peerId
  if (isAddressString(id) && peerIdOfAddress(id) !== '') return (address) => address === id
  return undefined
}

/** The order of the pages, and of `?after=`: addresses compared as strings (code units), on every node alike. */
function inAddressOrder (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** `?limit=`: the page size, within bounds; undefined when it is not a whole number from 1. */
function pageSize (raw: string | null): number | undefined {
  if (raw === null) return ADMIN_PAGE_DEFAULT
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) return undefined
  return Math.min(Number(raw), ADMIN_PAGE_MAX)
}

export class Admin {
  private readonly token: Buffer | undefined

  /** @param token the bearer token; without one every `/admin/` path is 404 */
  constructor (private readonly components: AdminComponents, token: string | undefined) {
    this.token = token === undefined ? undefined : digest(token)
  }

  /** Answers an HTTP request for `/admin/…`. */
  async handle (request: AdminRequest): Promise<AdminAnswer> {
    if (this.token === undefined) return { status: 404, body: { error: 'Not Found' } }
    if (!this.authorized(request.authorization)) {
      log('%s %s refused: no valid token', request.method, request.path)
      this.components.metrics.refused('admin auth')
      return { status: 401, body: { error: 'Unauthorized' }, headers: JSON_HEADERS }
    }
    const { method, path } = request
    if (path === '/admin/peers') {
      if (method !== 'GET' && method !== 'HEAD') return { status: 405, body: { error: 'Method Not Allowed' }, headers: { allow: 'GET, HEAD' } }
      return await this.list(request.query)
    }
    const removal = /^\/admin\/peers\/([^/]+)\/disconnect$/.exec(path)
    if (removal?.[1] !== undefined) {
      if (method !== 'POST') return { status: 405, body: { error: 'Method Not Allowed' }, headers: { allow: 'POST' } }
      return await this.disconnect(removal[1])
    }
    return { status: 404, body: { error: 'Not Found' } }
  }

  /** Answers a query from another node: a page of the peers here, or a removal here. */
  answer (value: unknown): unknown {
    const query = parseQuery(value)
    if (query === undefined) {
      log('refused an admin query from another node')
      return null
    }
    if (query.t === 'peers') return this.localPage(query.after, query.limit)
    const matches = whom(query.peer)
    return matches === undefined ? [] : this.removeHere(matches)
  }

  private authorized (header: string | undefined): boolean {
    const token = this.token
    if (token === undefined || header === undefined) return false
    const match = /^Bearer +(\S+) *$/i.exec(header)
    // compared as digests: same length whatever was sent, and in constant time
    return match?.[1] !== undefined && timingSafeEqual(digest(match[1]), token)
  }

  private async list (query: URLSearchParams): Promise<AdminAnswer> {
    const limit = pageSize(query.get('limit'))
    if (limit === undefined) return { status: 400, body: { error: `limit must be a whole number from 1 (at most ${ADMIN_PAGE_MAX} are listed)` } }
    const after = query.get('after')
    if (after !== null && !isAddressString(after)) return { status: 400, body: { error: 'after must be an address from a previous page\'s next' } }
    let peers = this.localPage(after, limit)
    let complete = true
    const { cluster } = this.components
    if (cluster !== undefined) {
      const asked = await cluster.ask({ t: 'peers', after, limit })
      complete = asked.complete
      for (const answer of asked.answers) {
        if (Array.isArray(answer)) peers = peers.concat(answer.filter((p): p is PeerView => isPeerView(p) && (after === null || p.address > after)).slice(0, limit))
      }
      peers.sort((a, b) => inAddressOrder(a.address, b.address))
      peers = peers.slice(0, limit)
    }
    const last = peers.at(-1)
    return {
      status: 200,
      body: {
        peers,
        // the page is full: there may be more after its last address
        next: peers.length === limit && last !== undefined ? last.address : null,
        ...(complete ? {} : { incomplete: 'some nodes did not answer in time' })
      }
    }
  }

  private async disconnect (encoded: string): Promise<AdminAnswer> {
    let id: string
    try {
      id = decodeURIComponent(encoded)
    } catch {
      return { status: 400, body: { error: 'the peer must be URL-encoded' } }
    }
    const matches = whom(id)
    if (matches === undefined) return { status: 400, body: { error: 'not a peer id or a peer\'s address' } }
    let removed = this.removeHere(matches)
    const { cluster } = this.components
    if (cluster !== undefined) {
      const asked = await cluster.ask({ t: 'disconnect', peer: id })
      for (const answer of asked.answers) {
        if (Array.isArray(answer)) removed = removed.concat(answer.filter(isRemoval))
      }
    }
    if (removed.length === 0) return { status: 404, body: { error: 'no such peer' } }
    return { status: 200, body: { removed } }
  }

  /** Joined addresses here after `after`, in address order, at most `limit`. */
  private localPage (after: string | null, limit: number): PeerView[] {
    const { registry, relayedBytesOf, clientAddressOf, transportOf, cluster } = this.components
    const page: Array<[string, PeerSocket]> = []
    for (const entry of registry.entries()) if (after === null || entry[0] > after) page.push(entry)
    page.sort((a, b) => inAddressOrder(a[0], b[0]))
    const now = Date.now()
    return page.slice(0, limit).map(([address, socket]) => ({
      address,
      peerId: peerIdOfAddress(address),
      connection: socket.id,
      node: cluster?.node ?? null,
      transport: transportOf(socket),
      clientAddress: clientAddressOf(socket),
      connectedForMS: now - socket.handshake.issued,
      relayedBytes: relayedBytesOf(socket.id)
    }))
  }

  /** Removes the matching addresses here; a connection left holding none is disconnected. */
  private removeHere (matches: (address: string) => boolean): Removal[] {
    const { registry, removePeer, cluster } = this.components
    const removed = removePeer(matches)
    for (const [, socket] of removed) {
      if (socket.connected && registry.addressesOf(socket.id) === undefined) {
        log('[%s] disconnected by the operator', socket.id)
        socket.disconnect(true)
      }
    }
    return removed.map(([address]) => ({ address, node: cluster?.node ?? null }))
  }
}
