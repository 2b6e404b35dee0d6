/**
 * ss-dial and relayed streams, spoken by hand over real socket.io-client 2.x
 * and 4.x: the handshake's every branch, byte-exact forwarding, backpressure,
 * teardown and limits.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { ERRORS } from '../src/index.js'
import { connect, type Client, type ClientVersion } from './helpers/clients.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { watchRss } from './helpers/procfs.js'
import { startCli, startServer } from './helpers/server.js'
import { STREAM, Source, accepted, makeChunks, relay, relayIsEmpty, send, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>
const MiB = 1024 * 1024

/** The TCP socket under a websocket client (socket.io-client 2.x: engine.io-client's transport over ws). */
function tcpSocketOf (client: Client): Socket {
  return (client.socket as unknown as { io: { engine: { transport: { ws: { _socket: Socket } } } } }).io.engine.transport.ws._socket
}

describe('dial handshake', () => {
  let server: Server
  const peers: Peer[] = []
  const open = async (version: ClientVersion = 'v2'): Promise<Peer> => {
    const p = await joinedPeer(server.url, { version })
    peers.push(p)
    return p
  }
  before(async () => { server = await startServer({ cryptoChallenge: false, dialTimeoutMS: 300 }) })
  after(async () => {
    await Promise.all(peers.map(async (p) => { await p.client.close() }))
    await server.stop()
  })

  it('refuses to dial from an address the connection has not joined', async () => {
    const a = await open()
    const b = await open('v4')
    assert.deepEqual(await a.client.request('ss-dial', b.address, a.address, randomUUID()), [ERRORS.NOT_AUTHORIZED])
    assert.deepEqual(await a.client.request('ss-dial', randomAddress(), b.address, randomUUID()), [ERRORS.NOT_AUTHORIZED])
    await relayIsEmpty(server)
  })

  it('answers "Peer not found" for an address nobody holds', async () => {
    const a = await open('v4')
    assert.deepEqual(await a.client.request('ss-dial', a.address, randomAddress(), randomUUID()), [ERRORS.PEER_NOT_FOUND])
    await relayIsEmpty(server)
  })

  it('answers "Invalid request" to malformed dials', async () => {
    const a = await open('v2')
    assert.deepEqual(await a.client.request('ss-dial', a.address, 42, 'x'), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.client.request('ss-dial', a.address, a.address, ''), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.client.request('ss-dial', a.address, a.address, 'x'.repeat(1000)), [ERRORS.INVALID_REQUEST])
    assert.deepEqual(await a.client.request('ss-dial'), [ERRORS.INVALID_REQUEST])
    await relayIsEmpty(server)
  })

  it('passes the listener\'s refusal to the dialer and leaves nothing behind', async () => {
    const a = await open('v2')
    const b = await open('v4')
    b.client.socket.on('ss-incomming', (_id: string, _from: string, answer: (err: string) => void) => { answer('busy, try later') })
    assert.deepEqual(await a.client.request('ss-dial', a.address, b.address, randomUUID()), ['busy, try later'])
    await relayIsEmpty(server)
  })

  it('times out a dial the listener never answers, and frees it', async () => {
    const a = await open('v2')
    const b = await open('v2')
    const dialId = randomUUID()
    const incoming = b.client.next('ss-incomming')
    const ended = b.client.next(`${STREAM}error.${dialId}.dialer`)
    const answer = a.client.request('ss-dial', a.address, b.address, dialId)
    await incoming
    // the listener accepts the stream but never answers the dial
    b.client.emit(`${STREAM}accept.${dialId}.dialer`)
    assert.deepEqual(await answer, [ERRORS.DIAL_TIMEOUT])
    assert.deepEqual(await ended, [ERRORS.DIAL_TIMEOUT])
    await relayIsEmpty(server)
  })

  it('answers "Peer not found" when the listener disconnects before answering', async () => {
    const a = await open('v4')
    const b = await joinedPeer(server.url, { version: 'v2' })
    const incoming = b.client.next('ss-incomming')
    const answer = a.client.request('ss-dial', a.address, b.address, randomUUID())
    await incoming
    await b.client.close()
    assert.deepEqual(await answer, [ERRORS.PEER_NOT_FOUND])
    await relayIsEmpty(server)
  })

  it('tears down a stream that is never accepted after the dial timeout', async () => {
    const a = await open('v2')
    const b = await open('v4')
    const dialId = randomUUID()
    const maySend = accepted(a.client, `${dialId}.dialer`)
    b.client.socket.on('ss-incomming', (id: string, _from: string, answer: () => void) => { if (id === dialId) answer() })
    assert.deepEqual((await a.client.request('ss-dial', a.address, b.address, dialId)).filter((x) => x != null), [])
    await maySend
    // the dialer sends, but the listener never accepts: held, then dropped
    send(a.client, `${dialId}.dialer`, makeChunks(4, 1024), null)
    const endAtDialer = a.client.next(`${STREAM}error.${dialId}.listener`)
    assert.deepEqual(await endAtDialer, [ERRORS.DIAL_TIMEOUT])
    await relayIsEmpty(server)
  })
})

describe('stream forwarding', () => {
  let server: Server
  const peers: Peer[] = []
  const open = async (version: ClientVersion = 'v2'): Promise<Peer> => {
    const p = await joinedPeer(server.url, { version })
    peers.push(p)
    return p
  }
  before(async () => { server = await startServer({ cryptoChallenge: false }) })
  after(async () => {
    await Promise.all(peers.map(async (p) => { await p.client.close() }))
    await server.stop()
  })

  for (const [dialerVersion, listenerVersion] of [['v2', 'v2'], ['v2', 'v4'], ['v4', 'v2'], ['v4', 'v4']] as const) {
    it(`relays both directions byte-exact between socket.io-client ${dialerVersion} and ${listenerVersion}`, async () => {
      const a = await open(dialerVersion)
      const b = await open(listenerVersion)
      const r = await relay(a.client, a.address, b.client, b.address)
      const there = [...makeChunks(50, 3000)]
      const back = [...makeChunks(20, 7)]
      await r.dialerMaySend
      send(a.client, r.forward, there)
      await r.listenerMaySend
      send(b.client, r.back, back, 'listener says goodbye')
      const atListener = await within(r.atListener.done, 'the forward stream')
      const atDialer = await within(r.atDialer.done, 'the back stream')
      assert.deepEqual(atListener, { bytes: 150000, chunks: 50, sha256: sha256(there), end: true })
      assert.deepEqual(atDialer, { bytes: 140, chunks: 20, sha256: sha256(back), end: 'listener says goodbye' })
      await relayIsEmpty(server)
    })
  }

  it('holds what the dialer sends until the listener accepts, then delivers it in order', async () => {
    const a = await open('v2')
    const b = await open('v2')
    const dialId = randomUUID()
    const maySend = accepted(a.client, `${dialId}.dialer`)
    let late: Source | undefined
    b.client.socket.on('ss-incomming', (id: string, _from: string, answer: () => void) => {
      if (id !== dialId) return
      late = new Source(b.client, `${dialId}.dialer`, false)
      answer()
    })
    await a.client.request('ss-dial', a.address, b.address, dialId)
    await maySend
    const chunks = [...makeChunks(100, 500)]
    send(a.client, `${dialId}.dialer`, chunks)
    // round trips: the server has read what the dialer sent, and b has read what the server sent it
    await a.client.request('ss-dial')
    await b.client.request('ss-dial')
    assert.ok(late !== undefined)
    // nothing is delivered before the accept
    assert.equal(late.received, 0)
    late.accept()
    const received = await within(late.done, 'the stream')
    assert.equal(received.sha256, sha256(chunks))
    assert.equal(received.end, true)
    b.client.emit(`${STREAM}error.${dialId}.listener`, true)
    a.client.emit(`${STREAM}accept.${dialId}.listener`)
    await relayIsEmpty(server)
  })

  it('delivers 64 MiB in 64 KiB chunks, every byte in order', async () => {
    const a = await open('v2')
    const b = await open('v2')
    const r = await relay(a.client, a.address, b.client, b.address)
    const count = 1024
    await r.dialerMaySend
    send(a.client, r.forward, makeChunks(count, 64 * 1024))
    const received = await within(r.atListener.done, '64 MiB', 120_000)
    assert.equal(received.bytes, 64 * MiB)
    assert.equal(received.sha256, sha256(makeChunks(count, 64 * 1024)))
    assert.equal(received.end, true)
    send(b.client, r.back, [])
    await r.atDialer.done
    await relayIsEmpty(server)
  })

  it('delivers a burst of 10,000 chunks of 1 KiB sent back to back', async () => {
    const a = await open('v4')
    const b = await open('v2')
    const r = await relay(a.client, a.address, b.client, b.address)
    await r.dialerMaySend
    send(a.client, r.forward, makeChunks(10_000, 1024))
    const received = await within(r.atListener.done, 'the burst', 60_000)
    assert.equal(received.chunks, 10_000)
    assert.equal(received.sha256, sha256(makeChunks(10_000, 1024)))
    send(b.client, r.back, [])
    await r.atDialer.done
    await relayIsEmpty(server)
  })

  it('keeps concurrent relays of one peer apart, and ending one leaves the others running', async () => {
    const a = await open('v2')
    const b = await open('v4')
    const relays = await Promise.all([0, 1, 2].map(async () => await relay(a.client, a.address, b.client, b.address)))
    await Promise.all(relays.map(async (r) => { await r.dialerMaySend }))
    const payloads = relays.map((_r, i) => [...makeChunks(10 + i, 100 + i)])
    // end the middle one first, with its data
    send(a.client, relays[1].forward, payloads[1])
    send(b.client, relays[1].back, [])
    const middle = await relays[1].atListener.done
    assert.equal(middle.sha256, sha256(payloads[1]))
    await relays[1].atDialer.done
    assert.equal(server.stats().relayedStreams, 4)
    for (const i of [0, 2]) {
      send(a.client, relays[i].forward, payloads[i])
      send(b.client, relays[i].back, [])
      assert.equal((await relays[i].atListener.done).sha256, sha256(payloads[i]))
    }
    await relayIsEmpty(server)
  })

  it('ends every stream on the surviving side when either side disconnects mid-stream', async () => {
    for (const leaver of ['dialer', 'listener'] as const) {
      const a = await joinedPeer(server.url, { version: 'v2' })
      const b = await joinedPeer(server.url, { version: 'v4' })
      const r = await relay(a.client, a.address, b.client, b.address)
      await r.dialerMaySend
      send(a.client, r.forward, makeChunks(5, 100), null)
      await until(() => r.atListener.received === 500, 'the first chunks arrive')
      const gone = leaver === 'dialer' ? a : b
      const stays = leaver === 'dialer' ? b : a
      await gone.client.close()
      const ended = await within((leaver === 'dialer' ? r.atListener : r.atDialer).done, 'the end on the surviving side')
      assert.equal(ended.end, true)
      await relayIsEmpty(server)
      await stays.client.close()
    }
  })

  it('ends the relays of an address when it is left', async () => {
    const a = await open('v2')
    const b = await open('v2')
    const r = await relay(a.client, a.address, b.client, b.address)
    b.client.emit('ss-leave', b.address)
    assert.equal((await within(r.atDialer.done, 'end at the dialer')).end, true)
    assert.equal((await within(r.atListener.done, 'end at the listener')).end, true)
    await relayIsEmpty(server)
  })

  it('ignores stream events from a third connection, whatever name it uses', async () => {
    const a = await open('v2')
    const b = await open('v4')
    const c = await open('v2')
    const r = await relay(a.client, a.address, b.client, b.address)
    await r.dialerMaySend
    // the intruder tries to inject, end and accept both streams
    for (const name of [r.forward, r.back]) {
      c.client.emit(`${STREAM}queue.${name}`, Buffer.from('injected'))
      c.client.emit(`${STREAM}error.${name}`, 'hijacked')
      c.client.emit(`${STREAM}accept.${name}`)
    }
    // and the receiver cannot send on the stream it receives
    b.client.emit(`${STREAM}queue.${r.forward}`, Buffer.from('backwards'))
    const chunks = [...makeChunks(3, 64)]
    send(a.client, r.forward, chunks)
    const received = await r.atListener.done
    assert.deepEqual(received, { bytes: 192, chunks: 3, sha256: sha256(chunks), end: true })
    send(b.client, r.back, [])
    assert.equal((await r.atDialer.done).end, true)
    await relayIsEmpty(server)
  })

  it('keeps the number of listeners on a socket flat however many dials it makes', async () => {
    const a = await open('v2')
    const b = await open('v2')
    const before = server.stats().socketListeners
    const relays = []
    for (let i = 0; i < 50; i++) relays.push(await relay(a.client, a.address, b.client, b.address))
    assert.equal(server.stats().relayedStreams, 100)
    assert.equal(server.stats().socketListeners, before)
    for (const r of relays) {
      send(a.client, r.forward, [])
      send(b.client, r.back, [])
    }
    await relayIsEmpty(server)
  })
})

/** A server with `options` and two joined peers, all closed after `body`. */
async function withPair (options: Parameters<typeof startServer>[0], versions: [ClientVersion, ClientVersion], body: (server: Server, a: Peer, b: Peer) => Promise<void>): Promise<void> {
  const server = await startServer({ cryptoChallenge: false, ...options })
  const a = await joinedPeer(server.url, { version: versions[0] })
  const b = await joinedPeer(server.url, { version: versions[1] })
  try {
    await body(server, a, b)
  } finally {
    await a.client.close()
    await b.client.close()
    await server.stop()
  }
}

describe('relay limits', () => {
  it('refuses a dial beyond the streams a connection may take part in', async () => {
    await withPair({ maxStreamsPerConnection: 4 }, ['v2', 'v2'], async (server, a, b) => {
      await relay(a.client, a.address, b.client, b.address)
      await relay(a.client, a.address, b.client, b.address)
      assert.deepEqual(await a.client.request('ss-dial', a.address, b.address, randomUUID()), [ERRORS.TOO_MANY_STREAMS])
      assert.deepEqual(await b.client.request('ss-dial', b.address, a.address, randomUUID()), [ERRORS.TOO_MANY_STREAMS])
      assert.equal(server.stats().relayedStreams, 4)
    })
  })

  it('ends a dial that relays more than its data limit, with an error message', async () => {
    await withPair({ maxRelayBytes: 10_000 }, ['v2', 'v4'], async (server, a, b) => {
      const r = await relay(a.client, a.address, b.client, b.address)
      await r.dialerMaySend
      send(a.client, r.forward, makeChunks(30, 1000), null)
      const atListener = await within(r.atListener.done, 'the end of the forward stream')
      assert.equal(atListener.end, ERRORS.RELAY_DATA_LIMIT)
      assert.ok(atListener.bytes <= 10_000)
      assert.equal((await within(r.atDialer.done, 'the end of the back stream')).end, ERRORS.RELAY_DATA_LIMIT)
      await relayIsEmpty(server)
    })
  })

  it('ends a dial that stays open longer than its duration limit, with an error message', async () => {
    await withPair({ maxRelayDurationMS: 300 }, ['v2', 'v2'], async (server, a, b) => {
      const r = await relay(a.client, a.address, b.client, b.address)
      assert.equal((await within(r.atListener.done, 'the end of the forward stream')).end, ERRORS.RELAY_DURATION_LIMIT)
      assert.equal((await within(r.atDialer.done, 'the end of the back stream')).end, ERRORS.RELAY_DURATION_LIMIT)
      await relayIsEmpty(server)
    })
  })
})

describe('backpressure', () => {
  it('pauses a sender while its receiver is behind, and resumes it without losing a byte', async () => {
    await withPair({ relayHighWaterBytes: 64 * 1024 }, ['v2', 'v2'], async (server, a, b) => {
      const r = await relay(a.client, a.address, b.client, b.address)
      // the receiver stops reading altogether until the server has paused the sender
      const tcp = tcpSocketOf(b.client)
      tcp.pause()
      await r.dialerMaySend
      const chunks = [...makeChunks(512, 16 * 1024)]
      send(a.client, r.forward, chunks)
      await until(() => server.stats().pausedSenders === 1, 'the sender is paused')
      tcp.resume()
      const received = await within(r.atListener.done, '8 MiB')
      assert.equal(received.sha256, sha256(chunks))
      assert.equal(received.end, true)
      assert.equal(server.stats().pausedSenders, 0)
      send(b.client, r.back, [])
      await r.atDialer.done
      await relayIsEmpty(server)
    })
  })

  // socket.io-client 4 splits polling requests at the server's maxPayload;
  // 2.x sends everything pending in one request, however large
  for (const [version, transport] of [['v2', 'websocket'], ['v4', 'polling']] as const) {
    it(`pauses a ${transport} sender while its receiver has not accepted, and resumes it on accept`, async () => {
      const server = await startServer({ cryptoChallenge: false, relayHighWaterBytes: 64 * 1024 })
      const a = await connect(server.url, version, transport)
      const addressA = randomAddress()
      await a.request('ss-join', addressA, '')
      const b = await joinedPeer(server.url, { version: 'v2' })
      try {
        const dialId = randomUUID()
        const maySend = accepted(a, `${dialId}.dialer`)
        let late: Source | undefined
        b.client.socket.on('ss-incomming', (id: string, _from: string, answer: () => void) => {
          if (id !== dialId) return
          late = new Source(b.client, `${dialId}.dialer`, false)
          answer()
        })
        await a.request('ss-dial', addressA, b.address, dialId)
        await maySend
        const chunks = [...makeChunks(64, 16 * 1024)]
        send(a, `${dialId}.dialer`, chunks)
        await until(() => server.stats().pausedSenders === 1, 'the sender is paused')
        assert.ok(late !== undefined)
        late.accept()
        const received = await within(late.done, '1 MiB')
        assert.equal(received.sha256, sha256(chunks))
        await until(() => server.stats().pausedSenders === 0, 'the sender is resumed')
        b.client.emit(`${STREAM}error.${dialId}.listener`, true)
        a.emit(`${STREAM}accept.${dialId}.listener`)
        await relayIsEmpty(server)
      } finally {
        await a.close()
        await b.client.close()
        await server.stop()
      }
    })
  }

  it('a slow receiver holds the sender back without losing bytes, and the server\'s memory stays bounded', async () => {
    const cli = await startCli(['--disableCryptoChallenge'])
    const url = `http://127.0.0.1:${cli.port}`
    const a = await joinedPeer(url, { version: 'v2' })
    const b = await joinedPeer(url, { version: 'v2' })
    try {
      // warm up at full speed: the server's heap grows to its working size once
      const warm = await relay(a.client, a.address, b.client, b.address)
      // the baseline is the peak of the warm-up: a major GC right after it would
      // otherwise make the heap's regrowth to its working size look like growth
      const warmWatch = watchRss(cli.proc.pid as number)
      await warm.dialerMaySend
      send(a.client, warm.forward, makeChunks(1024, 64 * 1024))
      send(b.client, warm.back, [])
      await within(warm.atListener.done, 'the warm-up transfer', 120_000)
      await warm.atDialer.done
      const warmPeak = warmWatch.stop()

      const r = await relay(a.client, a.address, b.client, b.address)
      // the receiver reads one socket read (at most 64 KiB) every 5 ms, about
      // 10 MiB/s at best: its TCP socket stays paused in between, so its
      // kernel buffer stays small and the server must hold the sender back
      const tcp = tcpSocketOf(b.client)
      let throttling = true
      const onData = (): void => { if (throttling) tcp.pause() }
      tcp.on('data', onData)
      tcp.pause()
      const throttle = setInterval(() => { tcp.resume() }, 5)
      const watch = watchRss(cli.proc.pid as number)
      await r.dialerMaySend
      const count = 1024
      send(a.client, r.forward, makeChunks(count, 64 * 1024))
      const received = await within(r.atListener.done, '64 MiB to a slow receiver', 180_000)
      throttling = false
      clearInterval(throttle)
      tcp.off('data', onData)
      tcp.resume()
      const peak = watch.stop()
      assert.equal(received.bytes, 64 * MiB)
      assert.equal(received.sha256, sha256(makeChunks(count, 64 * 1024)))
      const growth = peak - warmPeak
      process.stdout.write(`# server RSS: warm-up peak ${(warmPeak / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB\n`)
      // without backpressure the server holds tens of MiB here; with it, a few high-water marks
      assert.ok(growth < 8 * MiB, `server RSS grew by ${(growth / MiB).toFixed(1)} MiB while relaying 64 MiB to a slow receiver`)
      send(b.client, r.back, [])
      await r.atDialer.done
    } finally {
      await a.client.close()
      await b.client.close()
      const exit = await cli.stop()
      assert.equal(exit.code, 0)
    }
  })
})
