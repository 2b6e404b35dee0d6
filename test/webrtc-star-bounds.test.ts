/**
 * webrtc-star signalling at its edges, with raw socket.io-client 2.x (on
 * `/socket.io`, as libp2p-webrtc-star 0.20.8 connects) and 4.x (on
 * `/socket.io-next`, as @libp2p/webrtc-star 7 does): what is passed on, and
 * what is not — malformed, unauthorized, foreign and too many offers — and
 * which joins each path and the strict checks accept.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/protocol.js'
import { connect, type Client, type ClientVersion } from './helpers/clients.js'
import { randomAddress, randomPeerId } from './helpers/keys.js'
import { sampleOr, scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'
import { until } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

const NEXT = { path: '/socket.io-next/' }
const SIGNAL_BURST = 10

function starAddress (id = randomPeerId()): string {
  return `/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star/p2p/${id}`
}

/** A client as each webrtc-star client connects: 2.x on `/socket.io`, 4.x on `/socket.io-next`. */
async function starClient (server: Server, version: ClientVersion): Promise<Client> {
  return await connect(server.url, version, 'websocket', version === 'v4' ? NEXT : {})
}

/** Every `ws-handshake` a client receives, in order. */
function signalsOf (client: Client): Array<Record<string, unknown>> {
  const received: Array<Record<string, unknown>> = []
  client.socket.on('ws-handshake', (offer: Record<string, unknown>) => { received.push(offer) })
  return received
}

/** A well-formed offer from `src` to `dst`, marked by its intent id. */
function offer (src: string, dst: string, intentId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { intentId, srcMultiaddr: src, dstMultiaddr: dst, signal: { type: 'offer', sdp: 'v=0\r\n' }, ...extra }
}

async function joined (client: Client, address: string): Promise<void> {
  const [err] = await client.request('ss-join', address)
  assert.equal(err, null, `${address} joins`)
}

describe('webrtc-star signalling bounds', () => {
  let server: Server
  const clients: Client[] = []
  const open = async (version: ClientVersion): Promise<Client> => {
    const client = await starClient(server, version)
    clients.push(client)
    return client
  }

  before(async () => {
    server = await startServer({ cryptoChallenge: false, metrics: true, strictMultiaddr: true, maxSignalsPerSecond: SIGNAL_BURST / 2 })
  })
  after(async () => {
    for (const client of clients) await client.close()
    await server.stop()
  })

  for (const [from, to] of [['v2', 'v4'], ['v4', 'v2']] as const) {
    it(`passes a ${from} offer on to a ${to} peer with only the offer's own fields, and the answer back`, async () => {
      const [a, b] = [await open(from), await open(to)]
      const [aAddress, bAddress] = [starAddress(), starAddress()]
      const [atA, atB] = [signalsOf(a), signalsOf(b)]
      await joined(a, aAddress)
      await joined(b, bAddress)
      a.emit('ss-handshake', offer(aAddress, bAddress, 'intent-1', { injected: 'x', err: 'forged' }))
      await until(() => atB.length === 1, 'the offer arrives')
      assert.deepEqual(atB[0], offer(aAddress, bAddress, 'intent-1'))
      b.emit('ss-handshake', offer(aAddress, bAddress, 'intent-1', { answer: true, signal: { type: 'answer', sdp: 'v=0\r\n' } }))
      await until(() => atA.length === 1, 'the answer arrives')
      assert.deepEqual(atA[0], offer(aAddress, bAddress, 'intent-1', { answer: true, signal: { type: 'answer', sdp: 'v=0\r\n' } }))
    })
  }

  it('passes no malformed offer on, and answers none of them', async () => {
    const [a, b] = [await open('v4'), await open('v2')]
    const [aAddress, bAddress] = [starAddress(), starAddress()]
    const [atA, atB] = [signalsOf(a), signalsOf(b)]
    await joined(a, aAddress)
    await joined(b, bAddress)
    const good = offer(aAddress, bAddress, 'good')
    const malformed: unknown[][] = [
      [],
      [null],
      ['an offer'],
      [[good]],
      [{ ...good, signal: 'v=0' }],
      [{ ...good, signal: null }],
      [{ ...good, signal: [1, 2] }],
      [{ ...good, signal: { type: 'offer', sdp: 'x'.repeat(17 * 1024) } }],
      [{ ...good, intentId: 'i'.repeat(129) }],
      [{ ...good, intentId: 42 }],
      [{ ...good, srcMultiaddr: undefined }],
      [{ ...good, dstMultiaddr: `${bAddress}/${'x'.repeat(1024)}` }],
      [{ ...good, dstMultiaddr: { toString: bAddress } }]
    ]
    const before = sampleOr(await scrape(server.url), 'rendezvous_webrtc_star_signals_total', { result: 'refused' }, 0)
    for (const args of malformed) a.emit('ss-handshake', ...args)
    a.emit('ss-handshake', good)
    // the server handles a connection's events in order: once the good one is through, every malformed one was seen
    await until(() => atB.length >= 1, 'the well-formed offer arrives')
    assert.deepEqual(atB.map((o) => o.intentId), ['good'], 'only the well-formed offer was passed on')
    assert.deepEqual(atA, [], 'nothing came back to the sender')
    const refused = sampleOr(await scrape(server.url), 'rendezvous_webrtc_star_signals_total', { result: 'refused' }, 0) - before
    assert.equal(refused, malformed.length, 'each malformed offer counted as refused')
  })

  it('sends an offer back with an error, never on, when its sender does not hold its own end', async () => {
    const [a, b, intruder] = [await open('v2'), await open('v4'), await open('v4')]
    const [aAddress, bAddress] = [starAddress(), starAddress()]
    const [atA, atB, atIntruder] = [signalsOf(a), signalsOf(b), signalsOf(intruder)]
    await joined(a, aAddress)
    await joined(b, bAddress)
    await joined(intruder, starAddress())
    // an offer in a's name, and an answer in b's
    intruder.emit('ss-handshake', offer(aAddress, bAddress, 'forged-offer'))
    intruder.emit('ss-handshake', offer(aAddress, bAddress, 'forged-answer', { answer: true }))
    await until(() => atIntruder.length === 2, 'both come back')
    assert.deepEqual(atIntruder.map((o) => [o.intentId, o.err]), [['forged-offer', ERRORS.NOT_AUTHORIZED], ['forged-answer', ERRORS.NOT_AUTHORIZED]])
    // a's own offer after them arrives first at b: neither forged one was passed on
    a.emit('ss-handshake', offer(aAddress, bAddress, 'real'))
    await until(() => atB.length >= 1, 'the real offer arrives')
    assert.deepEqual(atB.map((o) => o.intentId), ['real'])
    assert.deepEqual(atA, [])
  })

  it('answers an offer to an absent peer, or to a websocket-star peer, with \'peer is not available\'', async () => {
    const [a, wsStar] = [await open('v4'), await connect(server.url, 'v2')]
    clients.push(wsStar)
    const aAddress = starAddress()
    const wsStarAddress = randomAddress()
    const [atA, atWsStar] = [signalsOf(a), signalsOf(wsStar)]
    await joined(a, aAddress)
    const [err] = await wsStar.request('ss-join', wsStarAddress, '')
    assert.equal(err, null)
    a.emit('ss-handshake', offer(aAddress, starAddress(), 'absent'))
    a.emit('ss-handshake', offer(aAddress, wsStarAddress, 'foreign'))
    await until(() => atA.length === 2, 'both come back')
    assert.deepEqual(atA.map((o) => [o.intentId, o.err]).sort(), [['absent', ERRORS.PEER_NOT_AVAILABLE], ['foreign', ERRORS.PEER_NOT_AVAILABLE]])
    assert.deepEqual(atWsStar, [], 'the websocket-star peer got no offer')
  })

  it('sends offers beyond the rate limit back with an error, and passes the rest on', async () => {
    const [a, b] = [await open('v2'), await open('v4')]
    const [aAddress, bAddress] = [starAddress(), starAddress()]
    const [atA, atB] = [signalsOf(a), signalsOf(b)]
    await joined(a, aAddress)
    await joined(b, bAddress)
    const sent = 4 * SIGNAL_BURST
    for (let i = 0; i < sent; i++) a.emit('ss-handshake', offer(aAddress, bAddress, `burst-${i}`))
    // each offer is either passed on or sent back
    await until(() => atA.length + atB.length === sent, `all ${sent} offers are answered or passed on`)
    assert.ok(atA.length > 0, 'some came back')
    for (const back of atA) assert.equal(back.err, ERRORS.RATE_LIMITED)
    // a burst of twice the rate, plus what refills while they arrive
    assert.ok(atB.length >= SIGNAL_BURST && atB.length < sent, `${atB.length} of ${sent} passed on`)
  })

  it('takes only webrtc-star joins on /socket.io-next, and refuses webrtc-star addresses that are not ws/wss with a peer id', async () => {
    const next = await open('v4')
    const [onNext] = await next.request('ss-join', randomAddress(), '')
    assert.equal(onNext, ERRORS.INVALID_MULTIADDR, 'a websocket-star join on /socket.io-next')
    const client = await open('v2')
    for (const address of [
      '/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star/p2p/not-a-peer-id',
      `/ip4/127.0.0.1/tcp/9090/p2p-webrtc-star/p2p/${randomPeerId()}`,
      '/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star',
      `/ip4/127.0.0.1/udp/9090/ws/p2p-webrtc-star/p2p/${randomPeerId()}`
    ]) {
      const [err] = await client.request('ss-join', address)
      assert.equal(err, ERRORS.INVALID_MULTIADDR, address)
    }
    const [err] = await client.request('ss-join', `/dns4/star.example.com/tcp/443/wss/p2p-webrtc-star/p2p/${randomPeerId()}`)
    assert.equal(err, null, 'a wss address by name')
  })

  it('keeps an address that moved to a new connection when the old one goes, and ss-leave() without an address releases only its webrtc-star ones (a 2.x connection on /socket.io holds both kinds)', async () => {
    const [first, second, dialer] = [await open('v4'), await open('v2'), await open('v4')]
    const address = starAddress()
    // held by the first connection alone: gone from the registry once the server saw it close
    const marker = starAddress()
    const dialerAddress = starAddress()
    const atSecond = signalsOf(second)
    await joined(first, address)
    await joined(first, marker)
    await joined(second, address)
    await joined(dialer, dialerAddress)
    await first.close()
    await until(() => !(marker in server.peers()), 'the server saw the first connection close')
    assert.ok(address in server.peers(), 'the moved address stays')
    dialer.emit('ss-handshake', offer(dialerAddress, address, 'after-move'))
    await until(() => atSecond.length === 1, 'the offer reaches the new holder')
    assert.equal(atSecond[0]?.intentId, 'after-move')

    const wsStarAddress = randomAddress()
    const [err] = await second.request('ss-join', wsStarAddress, '')
    assert.equal(err, null)
    second.emit('ss-leave')
    await until(() => !(address in server.peers()), 'the webrtc-star address is released')
    assert.ok(wsStarAddress in server.peers(), 'the websocket-star address stays')
  })
})
