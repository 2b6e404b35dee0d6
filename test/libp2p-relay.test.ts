/**
 * Dials and relayed connections between real libp2p-websocket-star@0.10.2
 * peers through the server started from the command line: what the client's
 * `dial()` and its pull-stream connections see, byte-exact, at volume, on
 * failure and on disconnect.
 */
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { inspect } from 'node:util'
import pull from 'pull-stream'
import { addressOf, randomPeerId } from './helpers/keys.js'
import { withCli, type OldConnection, type OldPeer } from './helpers/libp2p.js'
import { sample, scrape, untilSample } from './helpers/metrics.js'
import { PATIENCE_MS } from './helpers/server.js'
import { makeChunks } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

const KiB = 1024
const MiB = 1024 * KiB
/** After each test: no address joined, no stream relayed. */
const EMPTIED = ['rendezvous_peers', 'rendezvous_relayed_streams']

/** A pull-stream callback: `end` is `true` for a clean end, or an error. */
type PullCallback = (end: unknown, data?: Buffer) => void
type PullSource = (end: unknown, cb: PullCallback) => void

/** Bytes, chunks and sha256 of what went one way through a stream. */
class Tally {
  bytes = 0
  chunks = 0
  private readonly hash = createHash('sha256')

  add (chunk: Buffer): void {
    this.bytes += chunk.length
    this.chunks++
    this.hash.update(chunk)
  }

  digest (): { bytes: number, chunks: number, sha256: string } {
    return { bytes: this.bytes, chunks: this.chunks, sha256: this.hash.digest('hex') }
  }
}

/**
 * A pull-stream source of `chunks`, counted in `sent`. It calls back at once
 * (a burst), except every `batch` chunks, when it yields to the event loop:
 * the client's sink reads by recursion and would overflow the stack.
 */
function sourceOf (chunks: Iterable<Buffer>, sent: Tally, batch = 64): PullSource {
  const iterator = chunks[Symbol.iterator]()
  let given = 0
  return (end, cb) => {
    if (end !== null && end !== undefined && end !== false) return cb(end)
    const next = iterator.next()
    if (next.done === true) return cb(true)
    sent.add(next.value)
    if (++given % batch === 0) setImmediate(() => { cb(null, next.value) })
    else cb(null, next.value)
  }
}

/** Every connection `peer` is dialled with is piped back into itself. */
function echoes (peer: OldPeer): void {
  peer.onConnection((conn) => { pull(conn, conn) })
}

/** Sends `chunks` through `conn` and reads everything that comes back, until the connection ends. */
async function exchange (conn: OldConnection, chunks: Iterable<Buffer>, what: string, patienceMs = PATIENCE_MS): Promise<{ sent: ReturnType<Tally['digest']>, received: ReturnType<Tally['digest']>, ms: number }> {
  const sent = new Tally()
  const received = new Tally()
  const started = Date.now()
  await within(new Promise<void>((resolve, reject) => {
    pull(sourceOf(chunks, sent), conn, pull.drain((chunk: Buffer) => { received.add(chunk) }, (err: unknown) => {
      if (err === null || err === undefined) resolve()
      else reject(err instanceof Error ? err : new Error(inspect(err)))
    }))
  }), what, patienceMs)
  return { sent: sent.digest(), received: received.digest(), ms: Date.now() - started }
}

/** Chunks of every size from 1 byte to 64 KiB, so framing mistakes show. */
function* mixedChunks (): Generator<Buffer> {
  let i = 0
  for (const size of [1, 2, 3, 100, 1000, 4096, 16_383, 65_536, 65_535, 7]) {
    yield* makeChunks(5, size + (i++))
  }
}

/** The address the listener's side of `conn` was told it was dialled from. */
async function observedBy (conn: OldConnection): Promise<string[]> {
  return await new Promise((resolve, reject) => {
    conn.getObservedAddrs((err, addrs) => {
      if (err !== null) reject(err)
      else resolve(addrs.map(String))
    })
  })
}

/** `from` dials `to`, which echoes; what comes back is byte for byte what went. */
async function assertEchoes (from: OldPeer, to: OldPeer): Promise<void> {
  const before = to.incoming.length
  const conn = await from.dial(to.address)
  const { sent, received } = await exchange(conn, mixedChunks(), `the echo from ${to.address}`)
  assert.equal(sent.chunks, 50)
  assert.equal(received.bytes, sent.bytes)
  assert.equal(received.sha256, sent.sha256)
  assert.equal(to.incoming.length, before + 1, 'the listener was handed exactly one connection')
  assert.deepEqual(await observedBy(to.incoming[before]), [from.address], 'the listener is told who dialled')
}

/**
 * A pull-stream source of the same chunk for ever, that keeps at most
 * `window` bytes unechoed: the connection is mid-transfer for as long as it lasts.
 */
class Endless {
  sent = 0
  echoed = 0
  private stopped = false
  private waiting: PullCallback | undefined

  constructor (private readonly chunk: Buffer, private readonly window: number) {}

  readonly source: PullSource = (end, cb) => {
    if (end !== null && end !== undefined && end !== false) {
      this.stopped = true
      cb(end)
      return
    }
    this.waiting = cb
    this.poke()
  }

  /** Counts bytes that came back, and sends more if the window allows. */
  echo (bytes: number): void {
    this.echoed += bytes
    this.poke()
  }

  stop (): void {
    this.stopped = true
    this.poke()
  }

  private poke (): void {
    const cb = this.waiting
    if (cb === undefined) return
    if (this.stopped) {
      this.waiting = undefined
      cb(true)
      return
    }
    if (this.sent - this.echoed >= this.window) return
    this.waiting = undefined
    this.sent += this.chunk.length
    setImmediate(() => { cb(null, this.chunk) })
  }
}

describe('libp2p-websocket-star@0.10.2 dialling through the CLI with the crypto challenge (RSA PeerIds)', () => {
  const { cli, peer } = withCli([], { emptied: EMPTIED })

  it('A dials B and B dials A: each listener echoes, and every byte comes back', async () => {
    const a = await peer()
    const b = await peer()
    echoes(a)
    echoes(b)
    const dialled = sample(await scrape(cli().uri), 'rendezvous_dials_total_success')
    await assertEchoes(a, b)
    await assertEchoes(b, a)
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_dials_total_success'), dialled + 2)
  })

  it('echoes 16 MiB in 64 KiB chunks byte-exact', async (t) => {
    const a = await peer()
    const b = await peer()
    echoes(b)
    const conn = await a.dial(b.address)
    const { sent, received, ms } = await exchange(conn, makeChunks(256, 64 * KiB), 'the 16 MiB echo', 60_000)
    assert.equal(sent.bytes, 16 * MiB)
    assert.equal(received.bytes, 16 * MiB)
    assert.equal(received.sha256, sent.sha256)
    t.diagnostic(`16 MiB echoed in ${ms} ms: ${(16 / (ms / 1000)).toFixed(1)} MiB/s each way, ${(32 / (ms / 1000)).toFixed(1)} MiB/s through the server`)
  })

  it('echoes a burst of 10,000 chunks of 1 KiB', async (t) => {
    const a = await peer()
    const b = await peer()
    echoes(b)
    const conn = await a.dial(b.address)
    const { sent, received, ms } = await exchange(conn, makeChunks(10_000, KiB), 'the echo of the burst', 60_000)
    assert.equal(sent.chunks, 10_000)
    assert.equal(received.bytes, 10_000 * KiB)
    assert.equal(received.sha256, sent.sha256)
    t.diagnostic(`10,000 chunks of 1 KiB echoed in ${ms} ms (received back as ${received.chunks} chunks)`)
  })

  it('dialling an address nobody holds fails with "Peer not found"', async () => {
    const a = await peer()
    const notFound = (err: unknown): boolean => {
      assert.ok(err instanceof Error)
      assert.equal(err.message, 'Peer not found')
      return true
    }
    // a peer that never joined
    await assert.rejects(a.dial(addressOf(randomPeerId(), cli().port)), notFound)
    // a peer that listened, then closed
    const b = await peer()
    echoes(b)
    await assertEchoes(a, b)
    await b.close()
    await untilSample(cli().uri, 'rendezvous_peers', 1)
    await assert.rejects(a.dial(b.address), notFound)
    assert.equal(b.incoming.length, 1, 'the closed peer heard of no other dial')
  })

  it('ss-dial from an address the client did not join, on the client\'s own socket, fails with "Not authorized for this address"', async () => {
    const a = await peer()
    const b = await peer()
    const c = await peer()
    echoes(c)
    const socket = a.listener.io as { emit: (event: string, ...args: unknown[]) => void }
    const dialAs = async (from: string): Promise<unknown[]> => await within(new Promise<unknown[]>((resolve) => {
      socket.emit('ss-dial', from, c.address, randomUUID(), (...answer: unknown[]) => { resolve(answer) })
    }), `ss-dial as ${from}`)
    // another peer's address, and one nobody holds
    assert.deepEqual(await dialAs(b.address), ['Not authorized for this address'])
    assert.deepEqual(await dialAs(addressOf(randomPeerId(), cli().port)), ['Not authorized for this address'])
    // the connection still dials as itself, and C heard only of that dial
    await assertEchoes(a, c)
    assert.equal(c.incoming.length, 1)
    assert.deepEqual(await observedBy(c.incoming[0]), [a.address])
  })

  it('when the listener disconnects mid-transfer the dialer\'s read ends, and the server frees both streams', async () => {
    const a = await peer()
    const b = await peer()
    echoes(b)
    const conn = await a.dial(b.address)
    const endless = new Endless(Buffer.alloc(16 * KiB, 0xab), 256 * KiB)
    const readEnded = new Promise<unknown>((resolve) => {
      pull(endless.source, conn, pull.drain((chunk: Buffer) => { endless.echo(chunk.length) }, resolve))
    })
    await until(() => endless.echoed >= MiB, '1 MiB echoed')
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_relayed_streams'), 2)
    await b.close()
    assert.equal(await within(readEnded, 'the end of the dialer\'s read'), null, 'a clean end')
    endless.stop()
    await untilSample(cli().uri, 'rendezvous_relayed_streams', 0)
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 1)
  })

  it('when the dialer disconnects mid-transfer the listener\'s read ends, and the server frees both streams', async () => {
    const a = await peer()
    const b = await peer()
    let received = 0
    const readEnded = new Promise<unknown>((resolve) => {
      b.onConnection((conn) => { pull(conn, pull.through((chunk: Buffer) => { received += chunk.length }, resolve), conn) })
    })
    const conn = await a.dial(b.address)
    const endless = new Endless(Buffer.alloc(16 * KiB, 0xcd), 256 * KiB)
    pull(endless.source, conn, pull.drain((chunk: Buffer) => { endless.echo(chunk.length) }, () => { endless.stop() }))
    await until(() => endless.echoed >= MiB, '1 MiB echoed')
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_relayed_streams'), 2)
    await a.close()
    assert.equal(await within(readEnded, 'the end of the listener\'s read'), null, 'a clean end')
    assert.ok(received >= MiB)
    await untilSample(cli().uri, 'rendezvous_relayed_streams', 0)
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_peers'), 1)
  })
})

describe('libp2p-websocket-star@0.10.2 dialling through the CLI with the crypto challenge disabled (--disableCryptoChallenge)', () => {
  const { cli, peer } = withCli(['--disableCryptoChallenge'], { peerOptions: { allowJoinWithDisabledChallenge: true }, emptied: EMPTIED })

  it('A dials B and B dials A: each listener echoes, and every byte comes back', async () => {
    const a = await peer()
    const b = await peer()
    echoes(a)
    echoes(b)
    const dialled = sample(await scrape(cli().uri), 'rendezvous_dials_total_success')
    await assertEchoes(a, b)
    await assertEchoes(b, a)
    assert.equal(sample(await scrape(cli().uri), 'rendezvous_dials_total_success'), dialled + 2)
  })
})
