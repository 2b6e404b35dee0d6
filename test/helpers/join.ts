/** Joins spoken by hand over a real client. */
import assert from 'node:assert/strict'
import type { Client } from './clients.js'
import type { Identity } from './keys.js'

/** Both steps of the crypto challenge for `address`; resolves with the second join's ack. */
export async function joinWithChallenge (client: Client, address: string, identity: Identity): Promise<unknown[]> {
  const [err, nonce] = await client.request('ss-join', address, identity.publicKeyHex)
  assert.equal(err, null)
  assert.equal(typeof nonce, 'string')
  return await client.request('ss-join', address, await identity.sign(Buffer.from(nonce as string)))
}
