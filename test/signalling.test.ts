/**
 * webrtc-star signalling (README, "webrtc-star"), spoken by real
 * socket.io-client 4.x on `/socket.io-next` and 2.x on `/socket.io`, as
 * webrtc-star's clients connect: joins of the address alone, announcements
 * kept apart from websocket-star's, `ss-handshake` relayed as `ws-handshake`,
 * the errors echoed to the sender, the offers dropped, `--disableWebrtcStar`
 * and a rejoin on a new connection.
 *
 * Nothing here waits a fixed time: absence is shown by a later message of
 * the same connection that must come after it (a round trip, or a sentinel
 * offer or join that takes the same path).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { ERRORS, type Options } from '../src/index.js'
import { connect, type Client, type ClientVersion } from './helpers/clients.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { randomAddress, randomPeerId } from './helpers/keys.js'
import { sampleOr, scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'
import { eventually, until } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>
type Offer = Record<string, unknown>

const KiB = 1024
/** webrtc-star's v4 clients connect here; its older ones, like websocket-star's, to /socket.io. */
const NEXT_PATH = '/socket.io-next'
const SIGNAL = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' }

/** A webrtc-star listening address with a peer id, as the clients join. */
function webrtcAddress (port = 9090, id = randomPeerId()): string {
  return `/ip4/127.0.0.1/tcp/${port}/ws/p2p-webrtc-star/p2p/${id}`
}

/** A signal object whose JSON is exactly `length` characters. */
function signalOfLength (length: number): Offer {
  const empty = JSON.stringify({ type: 'offer', sdp: '' }).length
  return { type: 'offer', sdp: 'x'.repeat(length - empty) }
}

/** What the server passes on of an offer: its known fields only. */
function known (offer: Offer): Offer {
  const { intentId, srcMultiaddr, dstMultiaddr, signal, answer } = offer
  return { intentId, srcMultiaddr, dstMultiaddr, signal, ...(answer === true ? { answer } : {}) }
}

/** A webrtc-star peer: its connection, its address, and every `ws-handshake` it received, in order. */
class Star {
  readonly offers: Offer[] = []

  constructor (readonly client: Client, readonly address: string) {
    client.socket.on('ws-handshake', (offer: Offer) => { this.offers.push(offer) })
  }

  /** An offer from this peer's address to `to`, with a fresh intent id. */
  offerTo (to: string, extra: Offer = {}): Offer {
    return { intentId: randomUUID(), srcMultiaddr: this.address, dstMultiaddr: to, signal: SIGNAL, ...extra }
  }

  send (offer: unknown): void {
    this.client.emit('ss-handshake', offer)
  }

  /** Resolves with the first `ws-handshake` of `intentId` this peer received. */
  async received (intentId: string): Promise<Offer> {
    await until(() => this.offers.some((offer) => offer.intentId === intentId), `ws-handshake ${intentId}`)
    const found = this.offers.find((offer) => offer.intentId === intentId)
    assert.ok(found !== undefined)
    return found
  }
}

/** The connections a describe block opened, closed at its end. */
class Clients {
  private readonly open: Client[] = []

  /** A webrtc-star client's connection: 4.x on /socket.io-next, 2.x on /socket.io. */
  async star (url: string, version: ClientVersion): Promise<Client> {
    return this.kept(await connect(url, version, 'websocket', version === 'v4' ? { path: NEXT_PATH } : {}))
  }

  kept (client: Client): Client {
    this.open.push(client)
    return client
  }

  /** A websocket-star peer on /socket.io, joined without the challenge. */
  async websocketStar (url: string, version: ClientVersion = 'v2'): Promise<Peer & { listed: string[] }> {
    return await joinedPeer(url, { version, opened: (client) => { this.kept(client) } })
  }

  async close (): Promise<void> {
    await Promise.all(this.open.splice(0).map(async (client) => { await client.close() }))
  }
}

/** Joins `address` as webrtc-star's clients do, `ss-join(address)` with no acknowledgement, and waits until `server` holds it. */
async function joinStar (server: Server, client: Client, address = webrtcAddress(server.info.port)): Promise<Star> {
  const star = new Star(client, address)
  client.emit('ss-join', address)
  await until(() => address in server.peers(), `${address} is joined`)
  return star
}

/** A round trip on `client`: everything it sent before has been handled, and what the server sent back in the meantime has arrived. */
async function roundTrip (client: Client): Promise<void> {
  assert.deepEqual(await client.request('ss-dial'), [ERRORS.INVALID_REQUEST])
}

function refusedSignals (m: Awaited<ReturnType<typeof scrape>>): number {
  return sampleOr(m, 'rendezvous_webrtc_star_signals_total', { result: 'refused' })
}

/** A server of `options`, with its clients, for one describe block. */
function serving (options: Options): { server: () => Server, clients: Clients } {
  let server: Server | undefined
  const clients = new Clients()
  before(async () => { server = await startServer({ cryptoChallenge: false, ...options }) })
  after(async () => {
    await clients.close()
    await server?.stop()
  })
  return {
    server: () => {
      assert.ok(server !== undefined, 'the server started')
      return server
    },
    clients
  }
}

describe('webrtc-star joins and announcements', () => {
  describe('with a short refresh interval', () => {
    const { server, clients } = serving({ refreshPeerListIntervalMS: 200 })

    it('ss-join(address) alone joins; webrtc-star peers hear of each other, never of websocket-star peers, nor those of them', async () => {
      const s = server()
      const next = await joinStar(s, await clients.star(s.url, 'v4'))
      const old = await joinStar(s, await clients.star(s.url, 'v2'))
      const ws1 = await clients.websocketStar(s.url, 'v2')
      const ws2 = await clients.websocketStar(s.url, 'v4')
      // join answers list websocket-star peers only
      assert.deepEqual(ws1.listed, [])
      assert.deepEqual(ws2.listed, [ws1.address])
      await next.client.discovers(old.address)
      await old.client.discovers(next.address)
      await ws1.client.discovers(ws2.address)
      await ws2.client.discovers(ws1.address)
      // several refresh rounds go by, of both kinds
      for (const [star, other] of [[next, old], [old, next]] as const) {
        const since = star.client.peerEvents.length
        await until(() => star.client.peerEvents.slice(since).filter((a) => a === other.address).length >= 3, 'three more announcements of the other webrtc-star peer')
      }
      for (const [peer, other] of [[ws1, ws2], [ws2, ws1]] as const) {
        const since = peer.client.peerEvents.length
        await until(() => peer.client.peerEvents.slice(since).filter((a) => a === other.address).length >= 3, 'three more announcements of the other websocket-star peer')
      }
      assert.deepEqual(new Set(next.client.peerEvents), new Set([old.address]), 'the 4.x webrtc-star peer hears of the other webrtc-star peer only')
      assert.deepEqual(new Set(old.client.peerEvents), new Set([next.address]), 'the 2.x webrtc-star peer hears of the other webrtc-star peer only')
      assert.deepEqual(new Set(ws1.client.peerEvents), new Set([ws2.address]), 'websocket-star peers hear of websocket-star peers only')
      assert.deepEqual(new Set(ws2.client.peerEvents), new Set([ws1.address]), 'websocket-star peers hear of websocket-star peers only')
      assert.deepEqual((await ws1.client.request('ss-join', ws1.address, ''))[2], [ws2.address], 'a join answer lists no webrtc-star address')
    })
  })

  describe('with a refresh interval far longer than the test', () => {
    const { server, clients } = serving({ refreshPeerListIntervalMS: 10 * 60_000 })

    it('a new webrtc-star peer hears of those already joined at once, and they of it', async () => {
      const s = server()
      const first = await joinStar(s, await clients.star(s.url, 'v2'))
      const second = await joinStar(s, await clients.star(s.url, 'v4'))
      // the newcomer's join is announced at once, not at the next refresh
      await first.client.discovers(second.address)
      // and the newcomer hears of the one joined before it without a refresh either
      await second.client.discovers(first.address)
      const third = await joinStar(s, await clients.star(s.url, 'v4'))
      await third.client.discovers(first.address)
      await third.client.discovers(second.address)
      await first.client.discovers(third.address)
      await second.client.discovers(third.address)
      assert.ok(!third.client.peerEvents.includes(third.address), 'nobody is told about itself')
    })
  })
})

describe('ss-handshake relayed as ws-handshake', () => {
  const { server, clients } = serving({ metrics: true })
  let a: Star
  let b: Star
  let c: Star
  let websocketStar: Peer
  before(async () => {
    const s = server()
    a = await joinStar(s, await clients.star(s.url, 'v4'))
    b = await joinStar(s, await clients.star(s.url, 'v2'))
    c = await joinStar(s, await clients.star(s.url, 'v4'))
    websocketStar = await clients.websocketStar(s.url)
  })

  it('an offer from 4.x reaches 2.x with exactly its four fields, the answer comes back, and the other way round', async () => {
    for (const [dialer, listener] of [[a, b], [b, a]] as const) {
      const offer = dialer.offerTo(listener.address, { answer: false, err: 'forged', extra: 'dropped' })
      dialer.send(offer)
      const arrived = await listener.received(offer.intentId as string)
      assert.deepEqual(arrived, { intentId: offer.intentId, srcMultiaddr: dialer.address, dstMultiaddr: listener.address, signal: SIGNAL })
      assert.deepEqual(Object.keys(arrived).sort(), ['dstMultiaddr', 'intentId', 'signal', 'srcMultiaddr'])
      const answer = { intentId: offer.intentId, srcMultiaddr: dialer.address, dstMultiaddr: listener.address, signal: { type: 'answer', sdp: 'v=0' }, answer: true, extra: 1 }
      listener.send(answer)
      const back = await dialer.received(offer.intentId as string)
      assert.deepEqual(back, known(answer))
    }
    await roundTrip(c.client)
    assert.deepEqual(c.offers, [], 'the third peer heard of none of it')
  })

  it('an offer to an absent address, or to a websocket-star peer, comes back as the sender\'s offer with \'peer is not available\'', async () => {
    for (const to of [webrtcAddress(), websocketStar.address, randomAddress()]) {
      const offer = a.offerTo(to, { extra: true })
      a.send(offer)
      assert.deepEqual(await a.received(offer.intentId as string), { ...known(offer), err: ERRORS.PEER_NOT_AVAILABLE })
    }
    await roundTrip(websocketStar.client)
    // the websocket-star peer is not sent offers
    assert.equal(websocketStar.client.peerEvents.length, 0)
  })

  it('an offer from an address the sender does not hold, or an answer to one, comes back with \'Not authorized for this address\' and goes nowhere', async () => {
    // a claims b's address as its source
    const spoofed = { intentId: randomUUID(), srcMultiaddr: b.address, dstMultiaddr: c.address, signal: SIGNAL }
    // an answer's sender is its destination: a answers as b
    const spoofedAnswer = { intentId: randomUUID(), srcMultiaddr: c.address, dstMultiaddr: b.address, signal: SIGNAL, answer: true }
    // a websocket-star address is no webrtc-star sender, even held
    const fromWebsocketStar = { intentId: randomUUID(), srcMultiaddr: websocketStar.address, dstMultiaddr: a.address, signal: SIGNAL }
    for (const offer of [spoofed, spoofedAnswer]) {
      a.send(offer)
      assert.deepEqual(await a.received(offer.intentId), { ...known(offer), err: ERRORS.NOT_AUTHORIZED })
    }
    websocketStar.client.emit('ss-handshake', fromWebsocketStar)
    const [echo] = await websocketStar.client.next('ws-handshake')
    assert.deepEqual(echo, { ...known(fromWebsocketStar), err: ERRORS.NOT_AUTHORIZED })
    await roundTrip(b.client)
    await roundTrip(c.client)
    assert.deepEqual(b.offers.filter((o) => o.intentId === spoofed.intentId || o.intentId === spoofedAnswer.intentId), [])
    assert.deepEqual(c.offers, [])
  })

  it('malformed offers are neither passed on nor echoed, and are counted as refused; offers at the bounds pass', async () => {
    const s = server()
    const valid = (): Offer => a.offerTo(b.address)
    const without = (field: string): Offer => Object.fromEntries(Object.entries(valid()).filter(([key]) => key !== field))
    const long = (address: string): string => `${address}${'x'.repeat(KiB + 1 - address.length)}`
    const malformed: Array<[string, unknown]> = [
      ['a string', 'offer'], ['null', null], ['a number', 42], ['true', true], ['an array', [valid()]],
      ['no intentId', without('intentId')], ['an empty intentId', { ...valid(), intentId: '' }],
      ['an intentId of 129 characters', { ...valid(), intentId: 'i'.repeat(129) }], ['a numeric intentId', { ...valid(), intentId: 7 }],
      ['no srcMultiaddr', without('srcMultiaddr')], ['no dstMultiaddr', without('dstMultiaddr')], ['an empty dstMultiaddr', { ...valid(), dstMultiaddr: '' }],
      ['a srcMultiaddr over 1 KiB', { ...valid(), srcMultiaddr: long(a.address) }], ['a dstMultiaddr over 1 KiB', { ...valid(), dstMultiaddr: long(b.address) }],
      ['a numeric dstMultiaddr', { ...valid(), dstMultiaddr: 9 }],
      ['no signal', without('signal')], ['a string signal', { ...valid(), signal: 'v=0' }], ['a null signal', { ...valid(), signal: null }],
      ['an array signal', { ...valid(), signal: [SIGNAL] }], ['a numeric signal', { ...valid(), signal: 1 }],
      ['a signal whose JSON is over 16 KiB', { ...valid(), signal: signalOfLength(16 * KiB + 1) }],
      ['answer as a string', { ...valid(), answer: 'true' }], ['answer as a number', { ...valid(), answer: 1 }], ['answer null', { ...valid(), answer: null }]
    ]
    // at the bounds: passed on
    const bounds = [
      { ...valid(), intentId: 'i'.repeat(128) },
      { ...valid(), signal: signalOfLength(16 * KiB) },
      { ...valid(), answer: false }
    ]
    const before = refusedSignals(await scrape(s.url))
    const seenByB = b.offers.length
    const seenByA = a.offers.length
    for (const [, offer] of malformed) a.send(offer)
    for (const offer of bounds) a.send(offer)
    // taking the same path after them: once these arrive, anything of the malformed ones would have
    const sentinel = valid()
    const unavailable = a.offerTo(webrtcAddress())
    a.send(sentinel)
    a.send(unavailable)
    await b.received(sentinel.intentId as string)
    await a.received(unavailable.intentId as string)
    assert.deepEqual(b.offers.slice(seenByB), [...bounds, sentinel].map(known), 'only the well-formed offers reach b')
    assert.deepEqual(a.offers.slice(seenByA).map((o) => o.intentId), [unavailable.intentId], 'no malformed offer is echoed')
    assert.equal(refusedSignals(await scrape(s.url)) - before, malformed.length, 'each malformed offer is counted as refused')
    assert.ok(a.client.socket.connected && b.client.socket.connected)
  })
})

describe('ss-handshake rate', () => {
  const RATE = 5
  const { server, clients } = serving({ maxSignalsPerSecond: RATE })

  it(`a burst over twice maxSignalsPerSecond comes back in part with 'Too many requests, slow down', then offers pass again`, async () => {
    const s = server()
    const a = await joinStar(s, await clients.star(s.url, 'v4'))
    const burst = Array.from({ length: 8 * RATE }, () => a.offerTo(webrtcAddress()))
    for (const offer of burst) a.send(offer)
    await until(() => a.offers.length === burst.length, 'every offer of the burst is answered')
    const errors = burst.map((offer) => a.offers.find((o) => o.intentId === offer.intentId)?.err)
    const limited = errors.filter((err) => err === ERRORS.RATE_LIMITED).length
    const unavailable = errors.filter((err) => err === ERRORS.PEER_NOT_AVAILABLE).length
    assert.equal(limited + unavailable, burst.length, JSON.stringify(errors))
    assert.ok(limited > 0, 'some of the burst is refused')
    assert.ok(unavailable >= 2 * RATE, `the burst allowance passes: ${unavailable} passed`)
    // the bucket refills: an offer is let through again
    const probe = async (): Promise<unknown> => {
      const offer = a.offerTo(webrtcAddress())
      a.send(offer)
      return (await a.received(offer.intentId as string)).err
    }
    await eventually(probe, (err) => err === ERRORS.PEER_NOT_AVAILABLE, 'an offer passes again', { everyMs: 1000 / RATE, seen: String })
  })
})

describe('webrtc-star join refusals', () => {
  describe('on a server without the strict multiaddr check', () => {
    const { server, clients } = serving({ metrics: true })

    it('on /socket.io-next a websocket-star join is answered \'Invalid multiaddr\'', async () => {
      const s = server()
      for (const version of ['v4', 'v2'] as const) {
        const client = clients.kept(await connect(s.url, version, 'websocket', { path: NEXT_PATH }))
        const address = randomAddress()
        assert.deepEqual(await client.request('ss-join', address, ''), [ERRORS.INVALID_MULTIADDR], version)
        assert.equal(s.peers()[address], undefined)
      }
    })

    it('a webrtc-star address without a valid peer id is refused, counted and never announced', async () => {
      const s = server()
      const listener = await joinStar(s, await clients.star(s.url, 'v4'))
      const base = `/ip4/127.0.0.1/tcp/${s.info.port}/ws/p2p-webrtc-star`
      const refused = [
        base,
        `${base}/p2p/notbase58!0OIl`,
        `${base}/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi`,
        `${base}/ipfs/zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA`,
        `${base}/p2p/${'Q'.repeat(46)}`
      ]
      const failures = (m: Awaited<ReturnType<typeof scrape>>): number => sampleOr(m, 'rendezvous_joins_total_failure', { transport: 'webrtc-star' })
      const before = failures(await scrape(s.url))
      for (const version of ['v4', 'v2'] as const) {
        const client = await clients.star(s.url, version)
        for (const address of refused) client.emit('ss-join', address)
        await roundTrip(client)
        // with an acknowledgement, the reason
        assert.deepEqual(await client.request('ss-join', base), [ERRORS.INVALID_MULTIADDR])
      }
      assert.equal(failures(await scrape(s.url)) - before, 2 * (refused.length + 1))
      for (const address of refused) assert.equal(s.peers()[address], undefined, address)
      // joined after them, announced after them
      const sentinel = await joinStar(s, await clients.star(s.url, 'v2'))
      await listener.client.discovers(sentinel.address)
      assert.deepEqual(listener.client.peerEvents, [sentinel.address])
    })
  })

  describe('with the strict multiaddr check', () => {
    const { server, clients } = serving({ strictMultiaddr: true })

    it('a webrtc-star address that is not over ws or wss is refused; over ws and wss it joins', async () => {
      const s = server()
      const client = await clients.star(s.url, 'v4')
      const id = randomPeerId()
      const notWs = `/ip4/1.2.3.4/tcp/1/p2p-webrtc-star/p2p/${id}`
      client.emit('ss-join', notWs)
      await roundTrip(client)
      assert.equal(s.peers()[notWs], undefined)
      assert.deepEqual(await client.request('ss-join', notWs), [ERRORS.INVALID_MULTIADDR])
      for (const address of [`/ip4/1.2.3.4/tcp/1/ws/p2p-webrtc-star/p2p/${id}`, `/dns4/rendezvous.example/tcp/443/wss/p2p-webrtc-star/p2p/${randomPeerId()}`]) {
        await joinStar(s, await clients.star(s.url, 'v2'), address)
      }
    })
  })
})

describe('ss-dial to a webrtc-star peer', () => {
  const { server, clients } = serving({})

  it('is answered \'Peer not found\', and the webrtc-star peer hears of no dial', async () => {
    const s = server()
    const star = await joinStar(s, await clients.star(s.url, 'v4'))
    const other = await joinStar(s, await clients.star(s.url, 'v2'))
    const incoming: unknown[] = []
    star.client.socket.on('ss-incomming', (...args: unknown[]) => { incoming.push(args) })
    const ws = await clients.websocketStar(s.url)
    assert.deepEqual(await ws.client.request('ss-dial', ws.address, star.address, randomUUID()), [ERRORS.PEER_NOT_FOUND])
    assert.deepEqual(await other.client.request('ss-dial', other.address, star.address, randomUUID()), [ERRORS.PEER_NOT_FOUND])
    await roundTrip(star.client)
    assert.deepEqual(incoming, [])
  })
})

describe('webrtcStar: false', () => {
  const { server, clients } = serving({ webrtcStar: false })

  it('/socket.io-next is not served, webrtc-star joins are refused and ss-handshake gets nothing back', async () => {
    const s = server()
    for (const version of ['v4', 'v2'] as const) {
      await assert.rejects(connect(s.url, version, 'websocket', { path: NEXT_PATH }), `${version} on ${NEXT_PATH}`)
    }
    const client = clients.kept(await connect(s.url, 'v2'))
    const address = webrtcAddress(s.info.port)
    client.emit('ss-join', address)
    await roundTrip(client)
    assert.deepEqual(s.peers(), {})
    assert.deepEqual(await client.request('ss-join', address), [ERRORS.WEBRTC_STAR_OFF])
    const star = new Star(client, address)
    let acked = false
    star.client.emit('ss-handshake', star.offerTo(webrtcAddress()), () => { acked = true })
    star.send(star.offerTo(address))
    // and argument-less ss-leave is only an invalid request
    client.emit('ss-leave')
    await roundTrip(client)
    assert.deepEqual(star.offers, [])
    assert.equal(acked, false)
    // the websocket-star side works as ever
    const ws = await clients.websocketStar(s.url, 'v4')
    assert.deepEqual(Object.keys(s.peers()), [ws.address])
    assert.ok(client.socket.connected)
  })
})

describe('a webrtc-star peer that joins again on a new connection', () => {
  const { server, clients } = serving({})

  for (const [oldVersion, newVersion] of [['v2', 'v4'], ['v4', 'v2']] as const) {
    it(`keeps its address when the old connection (${oldVersion}) closes after the new one (${newVersion}) joined`, async () => {
      const s = server()
      const address = webrtcAddress(s.info.port)
      const dialer = await joinStar(s, await clients.star(s.url, 'v4'))
      const old = await joinStar(s, await clients.star(s.url, oldVersion), address)
      const oldHolder = s.peers()[address]
      const fresh = new Star(await clients.star(s.url, newVersion), address)
      fresh.client.emit('ss-join', address)
      await until(() => s.peers()[address] !== oldHolder, 'the new connection takes the address over')
      const holder = s.peers()[address]
      // the old connection leaves, with and without the address, then closes
      old.client.emit('ss-leave', address)
      old.client.emit('ss-leave')
      await roundTrip(old.client)
      const open = s.stats().limitedConnections
      await old.client.close()
      await until(() => s.stats().limitedConnections === open - 1, 'the server has handled the old connection\'s close')
      assert.equal(s.peers()[address], holder)
      // offers reach the new connection
      const offer = dialer.offerTo(address)
      dialer.send(offer)
      assert.deepEqual(await fresh.received(offer.intentId as string), known(offer))
      assert.deepEqual(old.offers, [])
      fresh.client.emit('ss-leave')
      await until(() => !(address in s.peers()), 'argument-less ss-leave releases it')
    })
  }
})
