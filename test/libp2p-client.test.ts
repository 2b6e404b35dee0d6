/**
 * The real old client, libp2p-websocket-star@0.10.2, listening and discovering
 * through the server started from the command line, as deployed.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addressOf, oldPeerId } from './helpers/keys.js'
import { listen, oldPeer, withCli, type OldPeer } from './helpers/libp2p.js'
import { sample, scrape, untilSample } from './helpers/metrics.js'

/** The discovery event's PeerInfo for `address` names the right id and only that address. */
function assertPeerInfo (peer: OldPeer, of: OldPeer): void {
  const at = peer.discovered.indexOf(of.address)
  assert.ok(at !== -1 && at < peer.peerInfos.length, `${peer.id} discovered ${of.address}`)
  const info = peer.peerInfos[at]
  assert.equal(info.id.toB58String(), of.id)
  assert.deepEqual(info.multiaddrs.toArray().map(String), [of.address])
}

describe('libp2p-websocket-star@0.10.2 with the crypto challenge (CLI defaults)', () => {
  const { cli, track } = withCli([])
  const listening = async (): Promise<OldPeer> => track(await listen(cli()))

  it('listens with an RSA-2048 PeerId through the crypto challenge', async (t) => {
    const started = Date.now()
    const { peerId } = await oldPeerId(2048)
    t.diagnostic(`RSA-2048 key made by peer-id@0.12 in ${Date.now() - started} ms`)
    const a = track(await oldPeer({ peerId }))
    await a.listen(cli())
    assert.deepEqual(a.events, ['listening'])
    assert.deepEqual(a.errors, [])
    assert.deepEqual(a.fromJoinAck, [], 'the first peer is told of nobody')
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 1)
    // the server holds it: the next peer's join ack names it
    const b = await listening()
    assert.deepEqual(b.fromJoinAck, [a.address])
  })

  it('a peer that listens later discovers the existing one from its join ack, and is announced to it', async () => {
    const a = await listening()
    const b = await listening()
    // named by the ack, before listen called back
    assert.deepEqual(b.fromJoinAck, [a.address])
    assertPeerInfo(b, a)
    // A's own join ack was empty, so B reaches it through `ws-peer`
    assert.deepEqual(a.fromJoinAck, [])
    await a.discovers(b.address)
    assertPeerInfo(a, b)
    assert.equal(a.heard(a.address), 0, 'A is not told about itself')
    assert.equal(b.heard(b.address), 0, 'B is not told about itself')
  })

  it('a new peer discovers every peer already listening', async () => {
    const others = [await listening(), await listening(), await listening()]
    const late = await listening()
    assert.deepEqual([...late.fromJoinAck].sort(), others.map((p) => p.address).sort())
    for (const other of others) assertPeerInfo(late, other)
    for (const other of others) await other.discovers(late.address)
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 4)
  })

  it('refuses a peer whose RSA key does not match the id in its address', async () => {
    const owner = await oldPeerId()
    const impostor = track(await oldPeer())
    const address = addressOf(owner.identity.id, cli().port)
    await assert.rejects(impostor.listen(cli(), address), (err: unknown) => {
      assert.ok(err instanceof Error)
      assert.match(err.message, /Id is not matching/)
      return true
    })
    // the client hangs up ('close'), then reports the error and 'close' once more
    assert.deepEqual(impostor.events, ['close', 'error', 'close'])
    assert.equal(impostor.listener.io, undefined, 'the client hung up')
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 0)
    // the address stays free for its owner
    const real = track(await oldPeer({ peerId: owner.peerId }))
    await real.listen(cli(), address)
    assert.deepEqual(real.events, ['listening'])
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 1)
  })
})

describe('libp2p-websocket-star@0.10.2 with the crypto challenge disabled (--disableCryptoChallenge)', () => {
  const { cli, track } = withCli(['--disableCryptoChallenge'])

  it('listens when the client allows joining without a challenge', async () => {
    const a = track(await oldPeer({ allowJoinWithDisabledChallenge: true }))
    await a.listen(cli())
    assert.deepEqual(a.events, ['listening'])
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 1)
    const b = track(await listen(cli(), { allowJoinWithDisabledChallenge: true }))
    assert.deepEqual(b.fromJoinAck, [a.address])
    await a.discovers(b.address)
  })

  it('without allowJoinWithDisabledChallenge the client itself refuses the server and hangs up', async () => {
    const a = track(await oldPeer())
    await assert.rejects(a.listen(cli()), (err: unknown) => {
      assert.ok(err instanceof Error)
      assert.match(err.message, /Tried to listen on a server with crypto challenge disabled/)
      return true
    })
    assert.deepEqual(a.events, ['close', 'error', 'close'])
    assert.deepEqual(a.errors.map((e) => e.message.split('\n')[0]), ['Tried to listen on a server with crypto challenge disabled!'])
    assert.equal(a.listener.io, undefined, 'the client hung up')
    // the server had let it join; its disconnect releases the address
    await untilSample(cli().uri, 'rendezvous_peers', 0)
  })
})

describe('libp2p-websocket-star@0.10.2 closing its listener (--refreshPeerListIntervalMS=100)', () => {
  const { cli, track } = withCli(['--refreshPeerListIntervalMS=100'])
  const listening = async (): Promise<OldPeer> => track(await listen(cli()))

  it('after listener.close() the others stop hearing of it', async () => {
    const a = await listening()
    const b = await listening()
    const c = await listening()
    // B is announced again and again while it listens
    await a.discovers(b.address, 3)
    await a.discovers(c.address, 3)

    await b.close()
    assert.ok(b.events.includes('close'))
    await untilSample(cli().uri, 'rendezvous_peers', 2)
    // D's announcement leaves the server after B was released, on the same
    // socket to A as any announcement of B still in flight: once A has D, it
    // has every announcement of B it will ever get
    const d = await listening()
    assert.deepEqual([...d.fromJoinAck].sort(), [a.address, c.address].sort())
    await a.discovers(d.address)
    await c.discovers(d.address)
    const heardOfB = [a.heard(b.address), c.heard(b.address)]
    // five more rounds of announcements of C, none of B
    await a.discovers(c.address, a.heard(c.address) + 5)
    assert.deepEqual([a.heard(b.address), c.heard(b.address)], heardOfB)
  })
})
