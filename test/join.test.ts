/**
 * ss-join, ss-leave, disconnect and discovery, spoken by real socket.io-client
 * 2.x and 4.x over websocket and polling.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/index.js'
import { CLIENT_KINDS, connect, type Client } from './helpers/clients.js'
import { addressOf, libp2pIdentity, oldPeerId, randomAddress, withLegacyId, type Identity } from './helpers/keys.js'
import { joinWithChallenge } from './helpers/join.js'
import { startServer } from './helpers/server.js'
import { until } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

/** The connection that holds `address` on `server`, if one does. */
function holderOf (server: Server, address: string): string | undefined {
  return server.peers()[address]
}

describe('join and discovery without the crypto challenge', () => {
  let server: Server
  const clients: Client[] = []
  const open = async (version: 'v2' | 'v4' = 'v2', transport: 'websocket' | 'polling' = 'websocket'): Promise<Client> => {
    const client = await connect(server.url, version, transport)
    clients.push(client)
    return client
  }

  before(async () => { server = await startServer({ cryptoChallenge: false, refreshPeerListIntervalMS: 200 }) })
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await server.stop()
  })

  it('clients of 2.x and 4.x, over websocket and polling, join and see each other', async () => {
    const joined: Array<{ client: Client, address: string }> = []
    for (const kind of CLIENT_KINDS) {
      const client = await open(kind.version, kind.transport)
      const address = randomAddress()
      const [err, sig, peers] = await client.request('ss-join', address, '')
      assert.equal(err, null, `${kind.version} ${kind.transport}`)
      assert.equal(sig, null)
      // the ack lists everyone who joined before
      for (const earlier of joined) assert.ok((peers as string[]).includes(earlier.address), `${kind.version} ${kind.transport} join ack lists ${earlier.address}`)
      joined.push({ client, address })
    }
    // and everyone hears of everyone else
    for (const a of joined) {
      for (const b of joined) if (a !== b) await a.client.discovers(b.address)
    }
    for (const { client, address } of joined) assert.ok(!client.peerEvents.includes(address), 'nobody is told about itself')
    for (const { client, address } of joined) client.emit('ss-leave', address)
    await until(() => Object.keys(server.peers()).length === 0, 'every address is released')
  })

  it('announces a new peer at once, then again every refresh interval, never faster', async () => {
    const a = await open('v2')
    const b = await open('v4')
    const addressA = randomAddress()
    const addressB = randomAddress()
    await a.request('ss-join', addressA, '')
    const joinedAt = Date.now()
    await b.request('ss-join', addressB, '')
    await a.discovers(addressB)
    // first announcement comes with the join, long before a refresh is due
    const count = (): number => a.peerEvents.filter((x) => x === addressB).length
    await until(() => count() >= 6, 'six announcements of B')
    const elapsed = Date.now() - joinedAt
    // 1 immediate + 5 refreshes need at least ~4 whole intervals
    assert.ok(elapsed >= 4 * 200, `six announcements took ${elapsed} ms, faster than the 200 ms interval allows`)
    a.emit('ss-leave', addressA)
    b.emit('ss-leave', addressB)
  })

  it('stops announcing an address as soon as it leaves', async () => {
    const a = await open('v4')
    const b = await open('v2')
    const c = await open('v2')
    const [addressA, addressB, addressC] = [randomAddress(), randomAddress(), randomAddress()]
    await a.request('ss-join', addressA, '')
    await b.request('ss-join', addressB, '')
    await c.request('ss-join', addressC, '')
    await a.discovers(addressB)
    b.emit('ss-leave', addressB)
    await until(() => holderOf(server, addressB) === undefined, 'B is released')
    const bSoFar = a.peerEvents.filter((x) => x === addressB).length
    const cSoFar = a.peerEvents.filter((x) => x === addressC).length
    // C keeps being announced (three more refresh rounds) while B is not
    await until(() => a.peerEvents.filter((x) => x === addressC).length >= cSoFar + 3, 'three more rounds')
    assert.equal(a.peerEvents.filter((x) => x === addressB).length, bSoFar)
    // a connection that has left every address hears no more announcements
    const bHeard = b.peerEvents.length
    await until(() => a.peerEvents.filter((x) => x === addressC).length >= cSoFar + 5, 'two more rounds')
    assert.equal(b.peerEvents.length, bHeard)
    a.emit('ss-leave', addressA)
    c.emit('ss-leave', addressC)
  })

  it('releases every address of a connection when it disconnects, and stops announcing them', async () => {
    const a = await open('v2')
    const b = await open('v2', 'polling')
    const addressA = randomAddress()
    const first = randomAddress()
    const second = randomAddress()
    await a.request('ss-join', addressA, '')
    // one connection may hold several addresses
    await b.request('ss-join', first, '')
    const [, , peers] = await b.request('ss-join', second, '')
    assert.ok((peers as string[]).includes(first), 'the second join lists the first address of the same connection')
    assert.equal(holderOf(server, first), holderOf(server, second))
    await a.discovers(second)
    await b.close()
    await until(() => holderOf(server, first) === undefined && holderOf(server, second) === undefined, 'both addresses released')
    assert.equal(server.stats().announcedAddresses, 1)
    a.emit('ss-leave', addressA)
    await until(() => server.stats().announcedAddresses === 0, 'nothing left to announce')
  })

  it('gives an address to the connection that joined it last', async () => {
    const a = await open('v2')
    const b = await open('v4')
    const address = randomAddress()
    await a.request('ss-join', address, '')
    const holderA = holderOf(server, address)
    await b.request('ss-join', address, '')
    const holderB = holderOf(server, address)
    assert.notEqual(holderA, holderB)
    // the old holder can no longer release it
    a.emit('ss-leave', address)
    const other = randomAddress()
    await a.request('ss-join', other, '')
    assert.equal(holderOf(server, address), holderB)
    b.emit('ss-leave', address)
    a.emit('ss-leave', other)
    await until(() => Object.keys(server.peers()).length === 0, 'released')
  })

  it('answers malformed requests with "Invalid request" and stays usable', async () => {
    const a = await open('v2')
    assert.deepEqual(await a.request('ss-join', 42, ''), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.request('ss-join', randomAddress(), 7), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.request('ss-join', 'not a multiaddr', ''), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.request('ss-join', '/ip4/999.1.2.3/tcp/1', ''), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.request('ss-join', '/' + 'x'.repeat(5000), ''), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.request('ss-join'), [ERRORS.INVALID_REQUEST])
    // without an ack there is nobody to answer: dropped
    a.emit('ss-join', { evil: true })
    a.emit('ss-join', randomAddress(), '')
    a.emit('ss-leave', 12)
    a.emit('ss-leave')
    const address = randomAddress()
    const [err] = await a.request('ss-join', address, '')
    assert.equal(err, null)
    a.emit('ss-leave', address)
  })
})

describe('strict multiaddr mode', () => {
  let server: Server
  let client: Client
  before(async () => {
    server = await startServer({ cryptoChallenge: false, strictMultiaddr: true })
    client = await connect(server.url, 'v4')
  })
  after(async () => {
    await client.close()
    await server.stop()
  })

  it('refuses addresses that are not websocket-star multiaddrs', async () => {
    assert.deepEqual(await client.request('ss-join', '/ip4/127.0.0.1/tcp/9090/ws/ipfs/QmSYZHHJYMfb6R4tLxoua1JTeRqHhVebknuBc4V4gyq7GV', ''), [ERRORS.INVALID_MULTIADDR])
    assert.deepEqual(await client.request('ss-join', '/ip4/127.0.0.1/tcp/9090', ''), [ERRORS.INVALID_MULTIADDR])
    const [err] = await client.request('ss-join', randomAddress(), '')
    assert.equal(err, null)
  })
})

describe('crypto challenge', () => {
  let server: Server
  const clients: Client[] = []
  const open = async (version: 'v2' | 'v4' = 'v2'): Promise<Client> => {
    const client = await connect(server.url, version)
    clients.push(client)
    return client
  }
  before(async () => { server = await startServer({ cryptoChallenge: true }) })
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await server.stop()
  })

  const identities: Array<[string, () => Promise<Identity>]> = [
    ['Ed25519 (12D3Koo… id)', async () => await libp2pIdentity('Ed25519')],
    ['Ed25519 with a legacy sha2-256 id', async () => await withLegacyId(await libp2pIdentity('Ed25519'))],
    ['secp256k1', async () => await libp2pIdentity('secp256k1')],
    ['secp256k1 with a legacy sha2-256 id', async () => await withLegacyId(await libp2pIdentity('secp256k1'))],
    ['RSA-2048 from @libp2p/crypto', async () => await libp2pIdentity('RSA')],
    ['RSA-2048 from the old client\'s peer-id', async () => (await oldPeerId()).identity]
  ]
  for (const [name, make] of identities) {
    for (const version of ['v2', 'v4'] as const) {
      it(`joins with a valid ${name} signature from socket.io-client ${version}`, async () => {
        const identity = await make()
        const client = await open(version)
        const address = addressOf(identity.id)
        const [err, sig, peers] = (await joinWithChallenge(client, address, identity)).answer
        assert.equal(err, null)
        assert.equal(sig, null)
        assert.ok(Array.isArray(peers))
        assert.ok(holderOf(server, address) !== undefined)
        client.emit('ss-leave', address)
        await until(() => holderOf(server, address) === undefined, 'released')
      })
    }
  }

  it('lets the same connection re-join with the signature it already proved', async () => {
    const identity = await libp2pIdentity('Ed25519')
    const client = await open('v2')
    const address = addressOf(identity.id)
    const { answer, signature } = await joinWithChallenge(client, address, identity)
    assert.equal(answer[0], null)
    client.emit('ss-leave', address)
    await until(() => holderOf(server, address) === undefined, 'released')
    assert.equal((await client.request('ss-join', address, signature))[0], null)
    assert.ok(holderOf(server, address) !== undefined)
    client.emit('ss-leave', address)
  })

  it('answers every failure with its error string and keeps the connection usable', async () => {
    const identity = await libp2pIdentity('Ed25519')
    const stranger = await libp2pIdentity('Ed25519')
    const client = await open('v2')
    const address = addressOf(identity.id)
    assert.deepEqual(await client.request('ss-join', address, ''), [ERRORS.NO_ID])
    // a key that is not the one the address names
    assert.deepEqual(await client.request('ss-join', address, stranger.publicKeyHex), [ERRORS.ID_MISMATCH])
    // an address whose id is not a peer id at all
    assert.deepEqual(await client.request('ss-join', '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star', identity.publicKeyHex), [ERRORS.ID_MISMATCH])
    // garbage where the key should be
    assert.deepEqual(await client.request('ss-join', address, 'zz-not-hex'), [ERRORS.CRYPTO_ERROR])
    assert.deepEqual(await client.request('ss-join', address, 'deadbeef'), [ERRORS.CRYPTO_ERROR])
    // a signature by the wrong key, then garbage hex as a signature
    const [, nonce] = await client.request('ss-join', address, identity.publicKeyHex)
    assert.deepEqual(await client.request('ss-join', address, await stranger.sign(Buffer.from(nonce as string))), [ERRORS.SIGNATURE_INVALID])
    // a signature Ed25519 cannot even parse makes verification throw
    assert.deepEqual(await client.request('ss-join', address, 'abcdef0123'), [ERRORS.CRYPTO_ERROR])
    assert.equal(holderOf(server, address), undefined)
    // still pending: the right signature joins
    const [err] = await client.request('ss-join', address, await identity.sign(Buffer.from(nonce as string)))
    assert.equal(err, null)
    client.emit('ss-leave', address)
  })

  it('takes an address only with its private key', async () => {
    const identity = await libp2pIdentity('Ed25519')
    const owner = await open('v2')
    const thief = await open('v4')
    const address = addressOf(identity.id)
    await joinWithChallenge(owner, address, identity)
    const holder = holderOf(server, address)
    assert.ok(holder !== undefined)
    // the thief knows the public key, but cannot sign the nonce it is given
    const [, nonce] = await thief.request('ss-join', address, identity.publicKeyHex)
    const forged = await (await libp2pIdentity('Ed25519')).sign(Buffer.from(nonce as string))
    assert.deepEqual(await thief.request('ss-join', address, forged), [ERRORS.SIGNATURE_INVALID])
    assert.equal(holderOf(server, address), holder)
    owner.emit('ss-leave', address)
  })

  it('bounds unanswered challenges per connection and frees them on disconnect', async () => {
    const before = server.stats()
    const client = await open('v4')
    const made: string[] = []
    let refused: unknown
    for (let i = 0; i < 40 && refused === undefined; i++) {
      const identity = await libp2pIdentity('Ed25519')
      const [err] = await client.request('ss-join', addressOf(identity.id), identity.publicKeyHex)
      if (err === null) made.push(identity.id)
      else refused = err
    }
    assert.equal(refused, ERRORS.TOO_MANY_CHALLENGES)
    assert.equal(made.length, 16)
    assert.equal(server.stats().pendingChallenges, before.pendingChallenges + 16)
    await client.close()
    await until(() => server.stats().pendingChallenges === before.pendingChallenges && server.stats().challengeConnections === before.challengeConnections, 'challenges freed')
  })
})

describe('challenge lifetime', () => {
  it('drops a challenge whose signature does not come in time', async () => {
    const server = await startServer({ challengeTimeoutMS: 100 })
    const client = await connect(server.url, 'v2')
    try {
      const identity = await libp2pIdentity('Ed25519')
      const address = addressOf(identity.id)
      const [, nonce] = await client.request('ss-join', address, identity.publicKeyHex)
      const signature = await identity.sign(Buffer.from(nonce as string))
      await until(() => server.stats().pendingChallenges === 0, 'the challenge expires')
      // the late signature is now taken for a key, and is not one
      assert.deepEqual(await client.request('ss-join', address, signature), [ERRORS.CRYPTO_ERROR])
    } finally {
      await client.close()
      await server.stop()
    }
  })
})
