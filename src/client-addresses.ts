/**
 * The client's address of each connection: the TCP peer's, or, when the peer
 * is a trusted proxy (`--trustProxy`), the one the proxies forwarded, in
 * `X-Forwarded-For` or, with `--proxyHeader=forwarded`, in RFC 7239's
 * `Forwarded`. proxy-addr reads the chain from the right, hop by hop, and
 * stops at the first address it does not trust, so a client cannot prepend
 * its way past a limit. One header only, the one the proxy writes: a client
 * can send either, and a header the proxy passes along untouched is the
 * client's word. Read from the handshake request once: the refusal of a
 * handshake, the connection it opens, the limits, the logs and the admin
 * view share it.
 */
import type { IncomingMessage } from 'node:http'
import parseForwarded from 'forwarded-parse'
import proxyaddr from 'proxy-addr'
import { connectionOf, requestOf } from './engine.js'
import type { PeerSocket } from './protocol.js'

/** Which header trusted proxies forward the client's address in. */
export type ProxyHeader = 'x-forwarded-for' | 'forwarded'

/** A `for=` value as an address: `[v6]:port` and `v4:port` lose the brackets and the port; `unknown` and `_hidden` names stay, and are never trusted. */
function nodeAddress (value: string | undefined): string {
  if (value === undefined || value === '') return 'unknown'
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    return value.slice(1, end < 0 ? undefined : end)
  }
  const colon = value.indexOf(':')
  return colon >= 0 && colon === value.lastIndexOf(':') ? value.slice(0, colon) : value
}

/**
 * The `for=` addresses of a `Forwarded` header, in order, comma-separated as
 * `X-Forwarded-For` has them; undefined when the header is malformed (it is
 * then ignored, and the TCP peer is the client).
 */
export function forwardedFor (header: string): string | undefined {
  try {
    return parseForwarded(header).map((element) => nodeAddress(element.for)).join(', ')
  } catch {
    return undefined
  }
}

export class ClientAddresses {
  private readonly trust: (address: string, hop: number) => boolean
  /** By handshake request, and by Engine.IO connection (which outlives its request). */
  private readonly known = new WeakMap<object, string>()

  /**
   * @param trustProxy hops to trust, or proxies' addresses and CIDRs (comma-separated); none when undefined
   * @param header where the trusted proxies put the client's address
   */
  constructor (trustProxy: number | string | undefined, private readonly header: ProxyHeader = 'x-forwarded-for') {
    this.trust = trustProxy === undefined
      ? () => false
      : typeof trustProxy === 'number'
        ? (_address, hop) => hop < trustProxy
        : proxyaddr.compile(trustProxy.split(',').map((s) => s.trim()))
  }

  /** The client's address for a handshake (or any) request. */
  of (req: IncomingMessage): string {
    let address = this.known.get(req)
    if (address === undefined) {
      // a socket already destroyed has no address
      address = req.socket.remoteAddress === undefined ? '' : proxyaddr(this.chainOf(req), this.trust)
      this.known.set(req, address)
    }
    return address
  }

  /**
   * The client's address of a Socket.IO connection, from its Engine.IO
   * handshake; read before the request is let go of (engine.ts,
   * `releaseHandshake`), and kept for the connection's life.
   */
  ofSocket (socket: PeerSocket): string {
    const connection = connectionOf(socket)
    let address = this.known.get(connection)
    if (address === undefined) {
      const req = requestOf(socket)
      address = req === undefined ? '' : this.of(req)
      this.known.set(connection, address)
    }
    return address
  }

  /** The request as proxy-addr reads it: the TCP peer, and the forwarded chain in `X-Forwarded-For`'s form. */
  private chainOf (req: IncomingMessage): IncomingMessage {
    if (this.header === 'x-forwarded-for') return req
    const header = req.headers.forwarded
    const chain = header === undefined ? '' : forwardedFor(header) ?? ''
    // proxy-addr reads only these two fields
    const view: Pick<IncomingMessage, 'headers' | 'socket'> = { headers: { 'x-forwarded-for': chain }, socket: req.socket }
    return view as IncomingMessage
  }
}
