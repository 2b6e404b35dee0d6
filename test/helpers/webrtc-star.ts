/**
 * The real webrtc-star clients as peers of a test server, with real WebRTC
 * in Node (`@roamhq/wrtc`, prebuilt): `@libp2p/webrtc-star@7.0.0`, whose
 * socket.io-client 4 connects to `/socket.io-next`, and
 * `libp2p-webrtc-star@0.20.8`, the last release on socket.io-client 2.x,
 * which connects to `/socket.io`. Each peer listens on the server, records
 * what it discovers, echoes every byte of an incoming connection back, and
 * can dial another peer.
 *
 * The transports hand each new connection to libp2p's upgrader (encryption
 * and multiplexing, the layer above the transport); here it hands the raw
 * connection back as it is, so the bytes are the WebRTC data channel's own.
 */
import { createRequire } from 'node:module'
import wrtc from '@roamhq/wrtc'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as modern from '@libp2p/webrtc-star'
import { multiaddr } from '@multiformats/multiaddr'
import { until } from './wait.js'

const require = createRequire(import.meta.url)

/** A connection as the transports give it: async-iterable duplex of bytes. */
export interface RawConnection {
  source: AsyncIterable<Uint8Array>
  sink: (source: AsyncIterable<Uint8Array>) => Promise<void>
  close: () => Promise<void>
}

export type StarClient = '7.0.0' | '0.20.8'

export interface StarPeer {
  client: StarClient
  id: string
  /** The address it joined: `/ip4/127.0.0.1/tcp/<port>/ws/p2p-webrtc-star/p2p/<id>`. */
  address: string
  /** Addresses of every discovery event, in order. */
  discovered: string[]
  /** Resolves once it discovered `address`. */
  discovers: (address: string) => Promise<void>
  /** Dials `address` over WebRTC, signalled through the server. */
  dial: (address: string) => Promise<RawConnection>
  /** Closes its listener (which sends `ss-leave`) and its connections. */
  close: () => Promise<void>
}

const upgrader = {
  upgradeInbound: async (connection: RawConnection): Promise<RawConnection> => await Promise.resolve(connection),
  upgradeOutbound: async (connection: RawConnection): Promise<RawConnection> => await Promise.resolve(connection)
}

/**
 * Every byte an incoming connection sends goes back to it, each chunk copied
 * as it arrives: what is sent back then does not depend on how long the
 * WebRTC binding leaves a received message's memory alone.
 */
function echo (connection: RawConnection): void {
  async function * copies (): AsyncGenerator<Uint8Array> {
    for await (const chunk of connection.source) yield new Uint8Array(chunk)
  }
  void connection.sink(copies()).catch(() => {})
}

interface ModernListener { listen: (ma: unknown) => Promise<void>, close: () => Promise<void> }
interface ModernTransport {
  createListener: (options: { handler: (connection: RawConnection) => void, upgrader: typeof upgrader }) => ModernListener
  dial: (ma: unknown, options: { upgrader: typeof upgrader }) => Promise<RawConnection>
}
interface ModernDiscovery {
  start: () => Promise<void>
  stop: () => Promise<void>
  addEventListener: (type: 'peer', listener: (event: { detail: { multiaddrs: Array<{ toString: () => string }> } }) => void) => void
}
/** `@libp2p/webrtc-star`'s exports, as far as the tests use them (its own types name older interface packages). */
const v7 = modern as unknown as {
  webRTCStar: (init: { wrtc: unknown }) => { transport: (components: { peerId: unknown }) => ModernTransport, discovery: () => ModernDiscovery }
}

/** What the tests use of `libp2p-webrtc-star@0.20.8` (CommonJS, untyped). */
interface LegacyListener {
  listen: (ma: unknown) => Promise<void>
  close: () => Promise<void>
  io?: { close: () => void }
}
interface LegacyTransport {
  createListener: (handler: (connection: RawConnection) => void) => LegacyListener
  dial: (ma: unknown, options: { signal: AbortSignal }) => Promise<RawConnection>
  discovery: { start: () => void, stop: () => void, on: (event: 'peer', listener: (peer: { multiaddrs: Array<{ toString: () => string }> }) => void) => void }
}
const LegacyWebRTCStar = require('libp2p-webrtc-star') as new (options: { upgrader: typeof upgrader, wrtc: unknown }) => LegacyTransport
/** The multiaddr@8 the old client works with. */
const legacyMultiaddr = createRequire(require.resolve('libp2p-webrtc-star'))('multiaddr') as (address: string) => unknown

export function webrtcStarAddress (port: number, id: string): string {
  return `/ip4/127.0.0.1/tcp/${port}/ws/p2p-webrtc-star/p2p/${id}`
}

/** A peer of `client` listening through the server on `port` (listening means connected; its join may still be on the way). */
export async function starPeer (client: StarClient, port: number): Promise<StarPeer> {
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const id = peerId.toString()
  const address = webrtcStarAddress(port, id)
  const discovered: string[] = []
  const record = (multiaddrs: Array<{ toString: () => string }>): void => {
    for (const ma of multiaddrs) discovered.push(ma.toString())
  }
  const discovers = async (other: string): Promise<void> => { await until(() => discovered.includes(other), `${client} peer ${id} discovers ${other}`) }
  /** What the peer is, whichever client: each adds how it dials and closes. */
  const known = { client, id, address, discovered, discovers }

  if (client === '7.0.0') {
    const star = v7.webRTCStar({ wrtc })
    const transport = star.transport({ peerId })
    const discovery = star.discovery()
    discovery.addEventListener('peer', (event) => { record(event.detail.multiaddrs) })
    await discovery.start()
    const listener = transport.createListener({ handler: echo, upgrader })
    await listener.listen(multiaddr(address))
    return {
      ...known,
      dial: async (to) => await transport.dial(multiaddr(to), { upgrader }),
      close: async () => {
        await listener.close()
        await discovery.stop()
      }
    }
  }

  const transport = new LegacyWebRTCStar({ upgrader, wrtc })
  transport.discovery.on('peer', (peer) => { record(peer.multiaddrs) })
  transport.discovery.start()
  const listener = transport.createListener(echo)
  await listener.listen(legacyMultiaddr(address))
  return {
    ...known,
    dial: async (to) => {
      // a dial it rejects (the server's error) leaves its WebRTC peer and that peer's timer behind; an abort destroys them
      const abort = new AbortController()
      try {
        return await transport.dial(legacyMultiaddr(to), { signal: abort.signal })
      } catch (err) {
        abort.abort()
        throw err
      }
    },
    close: async () => {
      // it sends `ss-leave` (without an address) but leaves its socket open: closed here
      await listener.close()
      listener.io?.close()
      transport.discovery.stop()
    }
  }
}

/**
 * Sends `bytes` on `connection` in chunks and resolves with what comes back,
 * once as many bytes came. The sending side stays open until then: a data
 * channel has no half-close, so ending it would end the echo too.
 *
 * The first chunk goes alone, and the rest once it is back: between the two
 * client libraries (7.0.0 and 0.20.8, on @roamhq/wrtc) a message sent while
 * the channel is opening was seen to arrive after later ones when other
 * WebRTC processes ran beside them (1 dial in 10 to 30). That is the
 * clients' channel set-up, not the server's: no byte of the connection
 * passes through it.
 */
export async function roundTrip (connection: RawConnection, bytes: Buffer, chunkBytes = 16 * 1024): Promise<Buffer> {
  const first = Math.min(chunkBytes, bytes.length)
  let firstBack = (): void => {}
  const firstIsBack = new Promise<void>((resolve) => { firstBack = resolve })
  let done = (): void => {}
  const finished = new Promise<void>((resolve) => { done = resolve })
  async function * chunks (): AsyncGenerator<Uint8Array> {
    yield bytes.subarray(0, first)
    await firstIsBack
    for (let at = first; at < bytes.length; at += chunkBytes) yield bytes.subarray(at, at + chunkBytes)
    await finished
  }
  void connection.sink(chunks()).catch(() => {})
  const received: Buffer[] = []
  let length = 0
  for await (const chunk of connection.source) {
    received.push(Buffer.from(chunk))
    length += chunk.length
    if (length >= first) firstBack()
    if (length >= bytes.length) break
  }
  done()
  return Buffer.concat(received)
}
