/** Joins spoken by hand over a real client. */
import assert from 'node:assert/strict'
import { connect, type Client, type ClientVersion, type Transport } from './clients.js'
import { randomAddress, type Identity } from './keys.js'

/** A connection and the address it joined. */
export interface Peer {
  client: Client
  address: string
}

/** An address short enough for an assertion's message (the server takes addresses of up to 1 KiB). */
function shown (address: string): string {
  return address.length > 100 ? `${address.slice(0, 60)}…` : address
}

/** What the two steps of a crypto challenge exchanged. */
export interface Challenged {
  /** The second join's ack: `[null, null, peers]` when it joined. */
  answer: unknown[]
  nonce: string
  /** The signature of the nonce: it joins the address again on the same connection. */
  signature: string
}

/**
 * Both steps of the crypto challenge for `address`: the public key, which
 * must be answered with a nonce, then the signature of the nonce. Resolves
 * with the second join's ack (not checked here) and what was exchanged.
 */
export async function joinWithChallenge (client: Client, address: string, identity: Identity): Promise<Challenged> {
  const [err, nonce] = await client.request('ss-join', address, identity.publicKeyHex)
  assert.equal(err, null, `challenge for ${shown(address)}`)
  assert.equal(typeof nonce, 'string', `the nonce for ${shown(address)}`)
  const signature = await identity.sign(Buffer.from(nonce as string))
  return { answer: await client.request('ss-join', address, signature), nonce: nonce as string, signature }
}

/** Joins `address` without the crypto challenge; checks that it joined and resolves with the addresses its ack listed. */
export async function joinWithoutChallenge (client: Client, address: string, where = ''): Promise<string[]> {
  const [err, , listed] = await client.request('ss-join', address, '')
  assert.equal(err, null, `join of ${shown(address)}${where}`)
  assert.ok(Array.isArray(listed), `the ack of the join of ${shown(address)} lists peers: ${JSON.stringify(listed)}`)
  return listed as string[]
}

export interface PeerOptions {
  version?: ClientVersion
  transport?: Transport
  /** Told of the connection as soon as it is open, before the join (to close it at cleanup whatever happens). */
  opened?: (client: Client) => void
  /** Merged into the client's options, e.g. `{ transports: ['polling', 'websocket'] }` for a connection that upgrades. */
  extra?: Record<string, unknown>
}

/** Connects to `url` and joins a random address without the crypto challenge; resolves with the peer and what its join's ack listed. */
export async function joinedPeer (url: string, { version = 'v2', transport = 'websocket', opened, extra }: PeerOptions = {}): Promise<Peer & { listed: string[] }> {
  const client = await connect(url, version, transport, extra)
  opened?.(client)
  const address = randomAddress()
  const listed = await joinWithoutChallenge(client, address, ` on ${url}`)
  return { client, address, listed }
}
