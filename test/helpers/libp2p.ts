/**
 * The real old client, `libp2p-websocket-star@0.10.2`, as a peer of a test
 * server: one transport (WStar) and one listener per peer, with everything it
 * discovers and every connection it is dialled with recorded for assertions.
 */
import WStar from 'libp2p-websocket-star'
import multiaddr from 'multiaddr'
import { addressOf, oldPeerId } from './keys.js'
import { within } from './wait.js'

/** An incoming connection from the client: a pull-stream duplex (`interface-connection`). */
export type OldConnection = any

/** What the client's `Listener` offers; it is untyped CommonJS. */
interface OldListener {
  io?: unknown
  on: (event: string, listener: (...args: any[]) => void) => unknown
  listen: (ma: unknown, callback: (err?: Error) => void) => void
  close: (callback: (err?: Error) => void) => void
  /** Disconnects from the server at once (the client's own, private, teardown). */
  _down: () => void
}

export interface OldPeerOptions {
  /** A `peer-id@0.12` PeerId; a new RSA-2048 one when absent. */
  peerId?: any
  /** The client's flag to join servers that do not run the crypto challenge. */
  allowJoinWithDisabledChallenge?: boolean
}

export interface OldPeer {
  /** The `peer-id@0.12` PeerId the transport signs with. */
  peerId: any
  /** Its base58 id. */
  id: string
  /** The transport: `ws.dial(multiaddr(address), cb)` dials through the listener's server. */
  ws: WStar
  listener: OldListener
  /** The address listened on, once `listen` was called. */
  address: string
  /** Addresses from every discovery `peer` event, in order; join ack and `ws-peer` alike. */
  discovered: string[]
  /** The PeerInfo objects themselves, in the same order. */
  peerInfos: any[]
  /** Addresses the join ack listed: the `peer` events between `listening` and listen's callback. */
  fromJoinAck: string[]
  /** Lifecycle events of the listener, in order: `listening`, `error`, `close`. */
  events: string[]
  /** Errors the listener emitted. */
  errors: Error[]
  /** Connections handed to the listener's handler, in order of arrival. */
  incoming: OldConnection[]
  /** What to do with each incoming connection besides recording it (default: nothing). */
  onConnection: (handler: (conn: OldConnection) => void) => void
  /** Listens through the server on `address` (default: this peer's own address there); rejects with the client's error. */
  listen: (server: ServerLike, address?: string) => Promise<void>
  /** How many discovery events named `address`. */
  heard: (address: string) => number
  /** Resolves once discovery has named `address` at least `times` times in all. */
  discovers: (address: string, times?: number) => Promise<void>
  /** Dials `address` with the client's own `ws.dial`. */
  dial: (address: string) => Promise<OldConnection>
  /**
   * Closes the listener the client's way, then makes sure the socket is gone
   * even if relayed connections kept the client from disconnecting.
   */
  close: () => Promise<void>
}

/** A server of either kind: the CLI (`port`) or an in-process one (`info.port`). */
export type ServerLike = { port: number } | { info: { port: number } }

function portOf (server: ServerLike): number {
  return 'port' in server ? server.port : server.info.port
}

/** A peer of the old client, not yet listening. */
export async function oldPeer (options: OldPeerOptions = {}): Promise<OldPeer> {
  const peerId = options.peerId ?? (await oldPeerId()).peerId
  const ws = new WStar({ id: peerId, allowJoinWithDisabledChallenge: options.allowJoinWithDisabledChallenge })
  const discovered: string[] = []
  const peerInfos: any[] = []
  const fromJoinAck: string[] = []
  const events: string[] = []
  const errors: Error[] = []
  const incoming: OldConnection[] = []
  const waiters = new Set<() => void>()
  let handler: (conn: OldConnection) => void = () => {}
  let inJoinAck = false

  ws.discovery.on('peer', (peerInfo: any) => {
    const address: string = peerInfo.multiaddrs.toArray()[0].toString()
    discovered.push(address)
    peerInfos.push(peerInfo)
    if (inJoinAck) fromJoinAck.push(address)
    for (const wake of waiters) wake()
  })
  const listener: OldListener = ws.createListener((conn: OldConnection) => {
    incoming.push(conn)
    handler(conn)
  })
  // the listener only names the ack's peers after 'listening' and before calling back
  listener.on('listening', () => { events.push('listening'); inJoinAck = true })
  // an EventEmitter with no 'error' listener throws: the client emits one whenever listen fails
  listener.on('error', (err: Error) => { events.push('error'); errors.push(err) })
  listener.on('close', () => { events.push('close') })

  const heard = (address: string): number => discovered.filter((a) => a === address).length

  const peer: OldPeer = {
    peerId,
    id: peerId.toB58String(),
    ws,
    listener,
    address: '',
    discovered,
    peerInfos,
    fromJoinAck,
    events,
    errors,
    incoming,
    onConnection: (h) => { handler = h },
    heard,
    listen: async (server, address) => {
      peer.address = address ?? addressOf(peer.id, portOf(server))
      try {
        await within(new Promise<void>((resolve, reject) => {
          listener.listen(multiaddr(peer.address), (err?: Error) => {
            inJoinAck = false
            if (err !== undefined && err !== null) reject(err)
            else resolve()
          })
        }), `listening on ${peer.address}`)
      } catch (err) {
        // a listen that never called back still holds its socket
        if (listener.io !== undefined) listener._down()
        throw err
      }
    },
    discovers: async (address, times = 1) => {
      if (heard(address) >= times) return
      let wake: (() => void) | undefined
      try {
        await within(new Promise<void>((resolve) => {
          wake = () => { if (heard(address) >= times) resolve() }
          waiters.add(wake)
        }), `${peer.id} to discover ${address} ${times} time(s)`)
      } finally {
        if (wake !== undefined) waiters.delete(wake)
      }
    },
    dial: async (address) => await within(new Promise<OldConnection>((resolve, reject) => {
      ws.dial(multiaddr(address), (err, conn) => { err !== null && err !== undefined ? reject(err) : resolve(conn) })
    }), `dial from ${peer.address} to ${address}`),
    close: async () => {
      await new Promise<void>((resolve, reject) => {
        listener.close((err?: Error) => { err !== undefined && err !== null ? reject(err) : resolve() })
      })
      if (listener.io !== undefined) listener._down()
    }
  }
  return peer
}

/** A peer of the old client listening through `server`; rejects with the client's error, leaving nothing open. */
export async function listen (server: ServerLike, options: OldPeerOptions = {}): Promise<OldPeer> {
  const peer = await oldPeer(options)
  await peer.listen(server)
  return peer
}
