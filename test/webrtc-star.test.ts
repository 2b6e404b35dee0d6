/**
 * The real webrtc-star clients against the CLI: `@libp2p/webrtc-star@7.0.0`
 * on `/socket.io-next` and `libp2p-webrtc-star@0.20.8` on `/socket.io`, with
 * real WebRTC connections in Node signalled through the server, beside the
 * real websocket-star client on the same server.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { ERRORS } from '../src/protocol.js'
import { listen, type OldPeer } from './helpers/libp2p.js'
import { randomPeerId } from './helpers/keys.js'
import { sampleOr, scrape, untilScraped } from './helpers/metrics.js'
import { startCli, PATIENCE_MS, type CliServer } from './helpers/server.js'
import { until } from './helpers/wait.js'
import { roundTrip, starPeer, webrtcStarAddress, type StarClient, type StarPeer } from './helpers/webrtc-star.js'

const WEBRTC = { transport: 'webrtc-star' }

/** Resolves once the CLI's `name{labels}` is `value`. */
async function untilWebrtc (cli: CliServer, name: string, value: number): Promise<void> {
  await untilScraped(cli.uri, (m) => sampleOr(m, name, WEBRTC, NaN) === value, `${name}{transport="webrtc-star"} is ${value}`,
    (m) => `it is ${sampleOr(m, name, WEBRTC, NaN)}`, PATIENCE_MS)
}

describe('the real webrtc-star clients, signalled through the CLI', () => {
  let cli: CliServer
  const peers: StarPeer[] = []
  const others: OldPeer[] = []
  let joined = 0
  /** A peer of `client`, once the server holds its address. */
  const peer = async (client: StarClient): Promise<StarPeer> => {
    const p = await starPeer(client, cli.port)
    peers.push(p)
    await untilWebrtc(cli, 'rendezvous_peers', ++joined)
    return p
  }
  before(async () => { cli = await startCli(['--refreshPeerListIntervalMS=500', '--disableCryptoChallenge']) })
  afterEach(async () => {
    await Promise.all([...peers.splice(0).map(async (p) => { await p.close() }), ...others.splice(0).map(async (p) => { await p.close() })])
    joined = 0
    await untilWebrtc(cli, 'rendezvous_peers', 0)
  })
  after(async () => {
    const exit = await cli.stop('SIGTERM')
    assert.equal(exit.code, 0, JSON.stringify(exit))
  })

  const pairs: Array<[StarClient, StarClient]> = [['7.0.0', '7.0.0'], ['0.20.8', '0.20.8'], ['0.20.8', '7.0.0'], ['7.0.0', '0.20.8']]
  for (const [from, to] of pairs) {
    it(`${from} dials ${to}: they discover each other, and a WebRTC connection carries 64 KiB both ways byte-exact`, async () => {
      const a = await peer(from)
      const b = await peer(to)
      await Promise.all([a.discovers(b.address), b.discovers(a.address)])
      assert.ok(!a.discovered.includes(a.address), 'not told about itself')
      const relayedBefore = sampleOr(await scrape(cli.uri), 'rendezvous_webrtc_star_signals_total', { result: 'relayed' })
      const connection = await a.dial(b.address)
      const bytes = randomBytes(64 * 1024)
      const back = await roundTrip(connection, bytes)
      assert.equal(back.length, bytes.length)
      assert.ok(back.equals(bytes), 'the echo is byte-exact')
      await connection.close()
      const relayed = sampleOr(await scrape(cli.uri), 'rendezvous_webrtc_star_signals_total', { result: 'relayed' })
      // at least the offer and the answer went through the server
      assert.ok(relayed - relayedBefore >= 2, `${relayed - relayedBefore} signals relayed`)
    })
  }

  for (const client of ['7.0.0', '0.20.8'] as const) {
    it(`${client}: a dial to an address nobody holds is rejected with the server's 'peer is not available'`, async () => {
      const a = await peer(client)
      const before = sampleOr(await scrape(cli.uri), 'rendezvous_webrtc_star_signals_total', { result: 'unavailable' })
      await assert.rejects(a.dial(webrtcStarAddress(cli.port, randomPeerId())), (err: Error) => {
        assert.equal(err.message, ERRORS.PEER_NOT_AVAILABLE)
        return true
      })
      assert.ok(sampleOr(await scrape(cli.uri), 'rendezvous_webrtc_star_signals_total', { result: 'unavailable' }) > before)
    })

    it(`${client}: closing the listener leaves: the server forgets the peer, and a dial to it is answered 'peer is not available'`, async () => {
      const a = await peer(client)
      const b = await peer('7.0.0')
      await b.discovers(a.address)
      await a.close()
      peers.splice(peers.indexOf(a), 1)
      await untilWebrtc(cli, 'rendezvous_peers', 1)
      joined = 1
      await assert.rejects(b.dial(a.address), (err: Error) => err.message === ERRORS.PEER_NOT_AVAILABLE)
    })
  }

  it('keeps the two transports apart: websocket-star peers and webrtc-star peers never hear of each other', async () => {
    const ws1 = await listen(cli, { allowJoinWithDisabledChallenge: true })
    others.push(ws1)
    const rtc1 = await peer('7.0.0')
    const rtc2 = await peer('0.20.8')
    const ws2 = await listen(cli, { allowJoinWithDisabledChallenge: true })
    others.push(ws2)
    // each has heard of its own kind (the join answer, or a ws-peer), after the other kind had joined
    await Promise.all([ws1.discovers(ws2.address), rtc1.discovers(rtc2.address), rtc2.discovers(rtc1.address)])
    // and a refresh round later (500 ms), still none of the other kind
    await until(() => rtc1.discovered.filter((a) => a === rtc2.address).length >= 2 && ws1.heard(ws2.address) >= 2, 'a refresh round')
    for (const ws of [ws1, ws2]) {
      for (const rtc of [rtc1, rtc2]) assert.ok(!ws.discovered.includes(rtc.address), `${ws.address} did not hear of ${rtc.address}`)
    }
    for (const rtc of [rtc1, rtc2]) {
      for (const ws of [ws1, ws2]) assert.ok(!rtc.discovered.includes(ws.address), `${rtc.address} did not hear of ${ws.address}`)
    }
    assert.equal(ws2.fromJoinAck.length, 1, 'the join answer lists the websocket-star peer only')
  })

  it('counts webrtc-star joins apart from websocket-star ones', async () => {
    const before = sampleOr(await scrape(cli.uri), 'rendezvous_joins_total_success', WEBRTC)
    await peer('7.0.0')
    await peer('0.20.8')
    assert.equal(sampleOr(await scrape(cli.uri), 'rendezvous_joins_total_success', WEBRTC), before + 2)
  })
})

describe('--disableWebrtcStar', () => {
  let cli: CliServer
  before(async () => { cli = await startCli(['--disableWebrtcStar']) })
  after(async () => { await cli.stop('SIGTERM') })

  it('refuses both clients: /socket.io-next is not served, and a join on /socket.io is refused', async () => {
    // 7.0.0's listen fails: its connection to /socket.io-next is refused
    await assert.rejects(starPeer('7.0.0', cli.port))
    // 0.20.8 connects, but its join is refused and counted
    const legacy = await starPeer('0.20.8', cli.port)
    try {
      await untilScraped(cli.uri, (m) => sampleOr(m, 'rendezvous_joins_total_failure', { transport: 'websocket-star' }, 0) +
        sampleOr(m, 'rendezvous_joins_total_failure', WEBRTC, 0) >= 1, 'the join is refused', () => 'not yet', PATIENCE_MS)
      const m = await scrape(cli.uri)
      assert.equal(sampleOr(m, 'rendezvous_peers', { transport: 'websocket-star' }), 0)
      assert.equal(sampleOr(m, 'rendezvous_peers', WEBRTC, -1), -1, 'no webrtc-star series')
    } finally {
      await legacy.close()
    }
  })
})
