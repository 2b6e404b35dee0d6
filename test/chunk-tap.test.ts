/**
 * src/engine.ts `tapStreamChunks`: once a websocket peer relays, its chunks
 * skip Engine.IO's and Socket.IO's decoding. What must not change is what
 * a peer sees, whatever form its packets take: chunks written as the clients
 * write them and chunks only Socket.IO's decoder reads (an escaped name)
 * arrive interleaved in order, and a header without its attachment is still
 * Socket.IO's to refuse. Raw Engine.IO messages go out through the real
 * clients' own engines, in order with their emits.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Client, ClientVersion } from './helpers/clients.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { startServer } from './helpers/server.js'
import { STREAM, makeChunks, relay, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

/** engine.io-client under either socket.io-client: `write` sends one Engine.IO message, text or binary. */
function engineOf (client: Client): { write: (data: string | Buffer) => void } {
  return (client.socket as unknown as { io: { engine: { write: (data: string | Buffer) => void } } }).io.engine
}

/** The header of a one-attachment binary event, with the event's name spelt as given (JSON, escapes and all). */
function header (spelt: string): string {
  return `51-["${spelt}",{"_placeholder":true,"num":0}]`
}

/** A chunk on `stream` whose header spells the name's dots as `\u002e`: the same event to Socket.IO, not the form the tap reads. */
function sendEscaped (client: Client, stream: string, chunk: Buffer): void {
  const engine = engineOf(client)
  engine.write(header(`${STREAM}queue.${stream}`.replaceAll('.', '\\u002e')))
  engine.write(chunk)
}

describe('relayed chunks taken before Socket.IO', () => {
  let server: Server
  const peers: Peer[] = []
  const open = async (version: ClientVersion): Promise<Peer> => {
    const p = await joinedPeer(server.url, { version })
    peers.push(p)
    return p
  }
  before(async () => { server = await startServer({ cryptoChallenge: false }) })
  after(async () => {
    await Promise.all(peers.map(async (p) => { await p.client.close() }))
    await server.stop()
  })

  for (const version of ['v2', 'v4'] as const) {
    it(`keeps the order of chunks in the clients' form and in a form only Socket.IO reads (socket.io-client ${version})`, async () => {
      const a = await open(version)
      const b = await open(version === 'v2' ? 'v4' : 'v2')
      const r = await relay(a.client, a.address, b.client, b.address)
      const chunks = [...makeChunks(40, 5000)]
      await r.dialerMaySend
      chunks.forEach((chunk, i) => {
        if (i % 3 === 1) sendEscaped(a.client, r.forward, chunk)
        else a.client.emit(`${STREAM}queue.${r.forward}`, chunk)
      })
      a.client.emit(`${STREAM}error.${r.forward}`, true)
      const got = await within(r.atListener.done, 'the forward stream')
      assert.deepEqual(got, { bytes: 200000, chunks: 40, sha256: sha256(chunks), end: true })
    })

    it(`leaves a chunk header without its attachment to Socket.IO, which closes that connection only (socket.io-client ${version})`, async () => {
      const a = await open(version)
      const b = await open('v2')
      const r = await relay(a.client, a.address, b.client, b.address)
      await r.dialerMaySend
      // a first chunk, so that the connection is tapped
      a.client.emit(`${STREAM}queue.${r.forward}`, Buffer.from('first'))
      await until(() => r.atListener.received === 'first'.length, 'the first chunk relayed')
      const closed = a.client.next('disconnect')
      const engine = engineOf(a.client)
      engine.write(header(`${STREAM}queue.${r.forward}`))
      engine.write('2["not an attachment"]')
      const [reason] = await within(closed, 'the dialer\'s disconnect')
      assert.equal(reason, 'transport close')
      const got = await within(r.atListener.done, 'the forward stream')
      // a peer that disconnects ends its streams as a clean end, as the old server did
      assert.deepEqual(got, { bytes: 'first'.length, chunks: 1, sha256: sha256([Buffer.from('first')]), end: true })
      // the listener is still served
      const c = await open('v4')
      const again = await relay(c.client, c.address, b.client, b.address)
      await again.dialerMaySend
      c.client.emit(`${STREAM}queue.${again.forward}`, Buffer.from('still here'))
      c.client.emit(`${STREAM}error.${again.forward}`, true)
      assert.equal((await within(again.atListener.done, 'the second stream')).bytes, 'still here'.length)
    })
  }
})
