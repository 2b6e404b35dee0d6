/**
 * The real old client, `libp2p-websocket-star@0.10.2` (or another released
 * line: 0.8.1, 0.9.1, and `libp2p-websocket-star-multi@0.4.4` around 0.10.2),
 * as a peer of a test server: one transport and one listener per peer, with
 * everything it discovers and every connection it is dialled with recorded
 * for assertions.
 */
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, afterEach, before } from 'node:test'
import type WStar from 'libp2p-websocket-star'
import multiaddr from 'multiaddr'
import type PeerId from 'peer-id'
import { addressOf, oldPeerId } from './keys.js'
import { untilSample } from './metrics.js'
import { startCli, type CliServer } from './server.js'
import { within } from './wait.js'

const require = createRequire(import.meta.url)

/** The released lines of the old client that apps still use, by the version they report. */
export const OLD_CLIENTS = {
  '0.8.1': 'libp2p-websocket-star-v08',
  '0.9.1': 'libp2p-websocket-star-v09',
  '0.10.2': 'libp2p-websocket-star',
  'multi 0.4.4': 'libp2p-websocket-star-multi'
} as const
export type OldClient = keyof typeof OLD_CLIENTS

/** An incoming connection from the client: a pull-stream duplex (`interface-connection`). */
export type OldConnection = WStar.Connection

/** The client's `Listener` (declared in test/types.d.ts): an EventEmitter with its socket as `io`. */
type OldListener = WStar.Listener

export interface OldPeerOptions {
  /** A `peer-id@0.12` PeerId; a new RSA-2048 one when absent. */
  peerId?: PeerId.WithKeys
  /** The client's flag to join servers that do not run the crypto challenge. */
  allowJoinWithDisabledChallenge?: boolean
  /** Which released line (default 0.10.2). */
  client?: OldClient
  /** For the multi client, which listens on every server it is given: the port of the one server here. */
  port?: number
}

export interface OldPeer {
  /** The `peer-id@0.12` PeerId the transport signs with. */
  peerId: PeerId.WithKeys
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
  peerInfos: WStar.PeerInfo[]
  /** Addresses the join ack listed: the `peer` events between `listening` and listen's callback. */
  fromJoinAck: string[]
  /** Lifecycle events of the listener, in order: `listening`, `error`, `close`. */
  events: string[]
  /**
   * Errors the listener emitted (a failed listen, or a failed join again after
   * a reconnect); for the multi client, also those of its inner listeners once
   * listening, which the multi client itself swallows.
   */
  errors: Error[]
  /** Why the listener's socket lost its connection, in order, once listening (`transport close`, `io server disconnect`…). */
  disconnects: string[]
  /** How many times its socket reconnected once listening (each time, the client joins again). */
  reconnects: number
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
  const client = options.client ?? '0.10.2'
  const Transport = require(OLD_CLIENTS[client]) as typeof WStar
  // the multi client takes its servers up front, as multiaddrs without the peer id
  const servers = client === 'multi 0.4.4' ? [addressOf('', options.port).replace(/\/ipfs\/$/, '')] : undefined
  const ws = new Transport({ id: peerId, allowJoinWithDisabledChallenge: options.allowJoinWithDisabledChallenge, ...(servers !== undefined ? { servers } : {}) })
  const discovered: string[] = []
  const peerInfos: WStar.PeerInfo[] = []
  const fromJoinAck: string[] = []
  const events: string[] = []
  const errors: Error[] = []
  const incoming: OldConnection[] = []
  const waiters = new Set<() => void>()
  let handler: (conn: OldConnection) => void = () => {}
  let inJoinAck = false

  ws.discovery.on('peer', (peerInfo: WStar.PeerInfo) => {
    const address = peerInfo.multiaddrs.toArray()[0].toString()
    discovered.push(address)
    peerInfos.push(peerInfo)
    if (inJoinAck) fromJoinAck.push(address)
    for (const wake of waiters) wake()
  })
  const listener = ws.createListener((conn) => {
    incoming.push(conn)
    handler(conn)
  })
  // the multi client's listener wraps one listener of the client per server
  const inner = (): OldListener[] => servers !== undefined ? Object.values((listener as OldListener & { servers: Record<string, OldListener> }).servers) : [listener]
  const down = (): void => { for (const l of inner()) if (l.io !== undefined) l._down() }
  const watched = new WeakSet()
  /** Records what becomes of the listener's connection(s) once listening. */
  const watch = (): void => {
    for (const l of inner()) {
      const io = l.io
      if (io === undefined || watched.has(io)) continue
      watched.add(io)
      io.on('disconnect', (reason: string) => { peer.disconnects.push(reason) })
      io.on('reconnect', () => { peer.reconnects++ })
      if (l !== listener) l.on('error', (err: Error) => { errors.push(err) })
    }
  }
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
    disconnects: [],
    reconnects: 0,
    incoming,
    onConnection: (h) => { handler = h },
    heard,
    listen: async (server, address) => {
      peer.address = address ?? addressOf(peer.id, portOf(server))
      try {
        await within(new Promise<void>((resolve, reject) => {
          listener.listen(multiaddr(peer.address), (err) => {
            inJoinAck = false
            if (err !== undefined && err !== null) reject(err)
            else resolve()
          })
        }), `listening on ${peer.address}`)
        watch()
      } catch (err) {
        // a listen that never called back still holds its socket
        down()
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
      ws.dial(multiaddr(address), (err, conn) => { if (err === null) resolve(conn); else reject(err) })
    }), `dial from ${peer.address} to ${address}`),
    close: async () => {
      await new Promise<void>((resolve, reject) => {
        listener.close((err) => { if (err !== undefined && err !== null) reject(err); else resolve() })
      })
      down()
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

export interface CliGroup {
  /** The CLI of the group (asserts that it started). */
  cli: () => CliServer
  /** Closes `peer` after the test. */
  track: (peer: OldPeer) => OldPeer
  /** A peer listening through the CLI, with the group's options, closed after the test. */
  peer: () => Promise<OldPeer>
}

/**
 * One CLI started with `args` for the tests of the enclosing describe. After
 * each test every tracked peer is closed, and the CLI's /metrics must show
 * each gauge of `emptied` back at 0 (each test starts from an empty server);
 * at the end the CLI is stopped by SIGTERM and must exit 0.
 */
export function withCli (args: string[], { peerOptions = {}, emptied = ['rendezvous_peers'] }: { peerOptions?: OldPeerOptions, emptied?: string[] } = {}): CliGroup {
  let cli: CliServer | undefined
  const peers: OldPeer[] = []
  const closeAll = async (): Promise<void> => {
    await Promise.all(peers.splice(0).map(async (peer) => { await peer.close() }))
  }
  before(async () => { cli = await startCli(args) })
  afterEach(async () => {
    await closeAll()
    if (cli === undefined) return
    for (const name of emptied) await untilSample(cli.uri, name, 0)
  })
  after(async () => {
    await closeAll()
    if (cli === undefined) return
    const exit = await cli.stop('SIGTERM')
    assert.equal(exit.code, 0, `the CLI exits 0 on SIGTERM: ${JSON.stringify(exit)}`)
  })
  const current = (): CliServer => {
    assert.ok(cli !== undefined, 'the CLI started')
    return cli
  }
  const track = (peer: OldPeer): OldPeer => {
    peers.push(peer)
    return peer
  }
  return { cli: current, track, peer: async () => track(await listen(current(), peerOptions)) }
}
