/**
 * Peer identities for the crypto challenge: current libp2p keys through
 * @libp2p/crypto, and RSA keys from the `peer-id` release the old client uses.
 */
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type PeerId from 'peer-id'

const require = createRequire(import.meta.url)

/** `peer-id@0.12` (declared in test/types.d.ts), loaded only by the helpers that use it. */
const loadPeerId = (): typeof PeerId => require('peer-id') as typeof PeerId

export interface Identity {
  /** Peer id as written in the address. */
  id: string
  /** Hex protobuf public key: the first `ss-join`'s data. */
  publicKeyHex: string
  /** Hex signature of `data`: the second `ss-join`'s data. */
  sign: (data: Uint8Array) => Promise<string>
}

export async function libp2pIdentity (type: 'Ed25519' | 'secp256k1' | 'RSA'): Promise<Identity> {
  const key = type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair(type)
  return {
    id: peerIdFromPrivateKey(key).toString(),
    publicKeyHex: Buffer.from(publicKeyToProtobuf(key.publicKey)).toString('hex'),
    sign: async (data) => Buffer.from(await key.sign(data)).toString('hex')
  }
}

/** The same key, with its id in the sha2-256 form older peer-id releases derived for every key type. */
export async function withLegacyId (identity: Identity): Promise<Identity> {
  const legacy = await new Promise<PeerId>((resolve, reject) => {
    loadPeerId().createFromPubKey(Buffer.from(identity.publicKeyHex, 'hex'), (err, id) => { if (err !== null) reject(err); else resolve(id) })
  })
  return { ...identity, id: legacy.toB58String() }
}

/** An RSA identity made by `peer-id@0.12`, the one libp2p-websocket-star@0.10.2 uses. */
export async function oldPeerId (bits = 2048): Promise<{ identity: Identity, peerId: PeerId.WithKeys }> {
  const peerId = await new Promise<PeerId.WithKeys>((resolve, reject) => {
    loadPeerId().create({ bits }, (err, id) => { if (err !== null) reject(err); else resolve(id) })
  })
  const identity: Identity = {
    id: peerId.toB58String(),
    publicKeyHex: peerId.marshalPubKey().toString('hex'),
    sign: async (data) => await new Promise<string>((resolve, reject) => {
      peerId.privKey.sign(Buffer.from(data), (err, sig) => { if (err !== null) reject(err); else resolve(sig.toString('hex')) })
    })
  }
  return { identity, peerId }
}

/** A websocket-star address for `id` on this test's server. */
export function addressOf (id: string, port = 9090): string {
  return `/ip4/127.0.0.1/tcp/${port}/ws/p2p-websocket-star/ipfs/${id}`
}

/** A random, well-formed peer id (a sha2-256 multihash in base58), with no key behind it. */
export function randomPeerId (): string {
  return loadPeerId().createFromBytes(Buffer.concat([Buffer.from([0x12, 0x20]), randomBytes(32)])).toB58String()
}

/** A unique address for tests that run without the crypto challenge. */
export function randomAddress (port = 9090): string {
  return addressOf(randomPeerId(), port)
}
