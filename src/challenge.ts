/**
 * The crypto challenge: a peer proves it holds the private key of the peer id
 * in the address it joins with. First `ss-join` carries the public key and gets
 * a nonce back; the second carries the nonce's signature.
 */
import { createHash, randomBytes } from 'node:crypto'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { ERRORS, type ErrorString } from './protocol.js'

type PublicKey = ReturnType<typeof publicKeyFromProtobuf>

interface Challenge {
  key: PublicKey
  nonce: string
  /** When an unanswered challenge is dropped; Infinity once verified. */
  expiresAt: number
  /** The signature that verified, so a re-join with it needs no crypto. */
  signature?: string
}

/** sha2-256 multihash code and digest length. */
const SHA256_MULTIHASH_PREFIX = Uint8Array.of(0x12, 0x20)

/**
 * Decodes a hex protobuf public key and checks it against the peer id written
 * in the address. Current libp2p inlines small keys in the id (identity
 * multihash, `12D3Koo…`); older peer-id releases hashed every key with
 * sha2-256 (`Qm…`): both forms are accepted.
 */
export function keyForPeerId (keyHex: string, peerId: string): PublicKey | ErrorString {
  let key: PublicKey
  let protobuf: Uint8Array
  try {
    protobuf = Buffer.from(keyHex, 'hex')
    key = publicKeyFromProtobuf(protobuf)
  } catch {
    return ERRORS.CRYPTO_ERROR
  }
  let claimed: Uint8Array
  try {
    claimed = peerIdFromString(peerId).toMultihash().bytes
  } catch {
    return ERRORS.ID_MISMATCH
  }
  const current = peerIdFromPublicKey(key).toMultihash().bytes
  if (Buffer.compare(claimed, current) === 0) return key
  const hashed = Buffer.concat([SHA256_MULTIHASH_PREFIX, createHash('sha256').update(protobuf).digest()])
  if (Buffer.compare(claimed, hashed) === 0) return key
  return ERRORS.ID_MISMATCH
}

export type BeginResult = { nonce: string } | { error: ErrorString }
export type VerifyResult = 'verified' | ErrorString

/**
 * Challenges per connection and address. Unanswered ones are bounded per
 * connection and expire; verified ones live until the connection goes.
 */
export class Challenges {
  private readonly byConnection = new Map<string, Map<string, Challenge>>()
  private pendingCount = 0
  private readonly sweeper: NodeJS.Timeout

  constructor (private readonly ttlMs: number, private readonly maxPending: number) {
    // one timer for all: expired entries are also dropped lazily on access
    this.sweeper = setInterval(() => { this.sweep(Date.now()) }, Math.max(1000, ttlMs / 2))
    this.sweeper.unref()
  }

  /** Unanswered challenges, all connections together. */
  get pending (): number {
    return this.pendingCount
  }

  /** Whether `ss-join` data for this connection and address is a signature. */
  has (connectionId: string, address: string): boolean {
    const challenge = this.byConnection.get(connectionId)?.get(address)
    if (challenge === undefined) return false
    if (challenge.expiresAt <= Date.now()) {
      this.remove(connectionId, address)
      return false
    }
    return true
  }

  /** First step: remember the key and hand out a nonce to sign. */
  begin (connectionId: string, address: string, key: PublicKey): BeginResult {
    let challenges = this.byConnection.get(connectionId)
    if (challenges === undefined) {
      challenges = new Map()
      this.byConnection.set(connectionId, challenges)
    }
    const pending = this.countPending(challenges)
    if (pending >= this.maxPending) return { error: ERRORS.TOO_MANY_CHALLENGES }
    if (challenges.size - pending >= this.maxPending) this.forgetOldestVerified(challenges)
    const nonce = randomBytes(24).toString('base64url')
    challenges.set(address, { key, nonce, expiresAt: Date.now() + this.ttlMs })
    this.pendingCount++
    return { nonce }
  }

  /** Second step: check the hex signature of the nonce's UTF-8 bytes. */
  async verify (connectionId: string, address: string, signatureHex: string): Promise<VerifyResult> {
    const challenge = this.byConnection.get(connectionId)?.get(address)
    if (challenge === undefined) return ERRORS.CRYPTO_ERROR
    if (challenge.signature === signatureHex) return 'verified'
    let ok: boolean
    try {
      ok = await challenge.key.verify(Buffer.from(challenge.nonce), Buffer.from(signatureHex, 'hex'))
    } catch {
      return ERRORS.CRYPTO_ERROR
    }
    if (!ok) return ERRORS.SIGNATURE_INVALID
    // the connection may have gone while the signature was being checked
    if (this.byConnection.get(connectionId)?.get(address) !== challenge) return ERRORS.CRYPTO_ERROR
    if (challenge.signature === undefined) this.pendingCount--
    challenge.signature = signatureHex
    challenge.expiresAt = Infinity
    return 'verified'
  }

  /** The connection went away: forget all its challenges. */
  dropConnection (connectionId: string): void {
    const challenges = this.byConnection.get(connectionId)
    if (challenges === undefined) return
    this.pendingCount -= this.countPending(challenges)
    this.byConnection.delete(connectionId)
  }

  /** Number of connections with any challenge state; for tests and leak checks. */
  get connections (): number {
    return this.byConnection.size
  }

  stop (): void {
    clearInterval(this.sweeper)
    this.byConnection.clear()
    this.pendingCount = 0
  }

  private remove (connectionId: string, address: string): void {
    const challenges = this.byConnection.get(connectionId)
    const challenge = challenges?.get(address)
    if (challenges === undefined || challenge === undefined) return
    if (challenge.signature === undefined) this.pendingCount--
    challenges.delete(address)
    if (challenges.size === 0) this.byConnection.delete(connectionId)
  }

  /** Verified entries outlive `ss-leave`; keep as many as pending ones at most. */
  private forgetOldestVerified (challenges: Map<string, Challenge>): void {
    for (const [address, c] of challenges) {
      if (c.signature !== undefined) {
        challenges.delete(address)
        return
      }
    }
  }

  private countPending (challenges: Map<string, Challenge>): number {
    let n = 0
    for (const c of challenges.values()) if (c.signature === undefined) n++
    return n
  }

  private sweep (now: number): void {
    for (const [connectionId, challenges] of this.byConnection) {
      for (const [address, c] of challenges) {
        if (c.expiresAt <= now) this.remove(connectionId, address)
      }
    }
  }
}
