/**
 * src/engine.ts `tapStreamChunks` and src/chunk-frames.ts: once a websocket
 * peer relays, its chunks are taken out of its TCP stream before `ws`,
 * Engine.IO and Socket.IO decode them. What must not change is what a peer
 * sees, whatever form its packets take: chunks written as the clients write
 * them and chunks only Socket.IO's decoder reads (an escaped name) arrive
 * interleaved in order; a header without its attachment is still Socket.IO's
 * to refuse; and the tap, which takes over while `ws` may be inside a frame,
 * leaves the rest of that frame to `ws` even when it reads as a chunk. Raw
 * Engine.IO messages go out through the real clients' own engines, in order
 * with their emits; raw frames, through their TCP sockets.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { Client, ClientVersion } from './helpers/clients.js'
import { OPCODE } from '../src/chunk-frames.js'
import { chunkHeader, chunkFrames, clientFrame } from './helpers/client-frames.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { startServer } from './helpers/server.js'
import { STREAM, makeChunks, relay, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>

/** engine.io-client under either socket.io-client: `write` sends one Engine.IO message, text or binary. */
function engineOf (client: Client): { write: (data: string | Buffer) => void } {
  return (client.socket as unknown as { io: { engine: { write: (data: string | Buffer) => void } } }).io.engine
}

/** The TCP socket under a client's websocket (engine.io-client's transport keeps its `ws` WebSocket as `ws`). */
function rawSocketOf (client: Client): Socket {
  return (client.socket as unknown as { io: { engine: { transport: { ws: { _socket: Socket } } } } }).io.engine.transport.ws._socket
}

/** Stops a client's Engine.IO heartbeat for the rest of a short test: no ping of its own goes out between raw writes. */
function stopHeartbeat (client: Client): void {
  const engine = (client.socket as unknown as { io: { engine: Record<string, unknown> } }).io.engine
  for (const timer of ['pingIntervalTimer', 'pingTimeoutTimer']) clearTimeout(engine[timer] as NodeJS.Timeout | undefined)
}

/**
 * A masked binary frame whose bytes on the wire end in `tail`, after `random`
 * others (the first of them Engine.IO 3's type byte once unmasked), and the
 * chunk it carries once unmasked.
 */
function wireTailedAttachment (tail: Buffer, random: number, eio3: boolean): { frame: Buffer, chunk: Buffer } {
  const length = random + tail.length
  const frame = clientFrame(OPCODE.BINARY, Buffer.alloc(length))
  const payloadAt = frame.length - length
  const mask = frame.subarray(payloadAt - 4, payloadAt)
  const wire = frame.subarray(payloadAt)
  randomBytes(random).copy(wire)
  if (eio3) wire[0] = 4 ^ mask[0]
  tail.copy(wire, random)
  const payload = Buffer.from(wire)
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3]
  return { frame, chunk: eio3 ? payload.subarray(1) : payload }
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

    it(`takes over while ws is inside a frame, and hands on chunks whose frames arrive cut anywhere, with pings between (socket.io-client ${version})`, async () => {
      const a = await open(version)
      const b = await open('v2')
      const r = await relay(a.client, a.address, b.client, b.address)
      await r.dialerMaySend
      const raw = rawSocketOf(a.client)
      // the client's own heartbeat would land inside the frames written here
      stopHeartbeat(a.client)
      const event = `${STREAM}queue.${r.forward}`
      const eio3 = version === 'v2'
      const framesOf = (chunk: Buffer): Buffer[] => chunkFrames(event, chunk, eio3)
      const chunks = [...makeChunks(12, 3000)]
      // the second chunk's attachment ends in bytes that read, on the wire, as a whole chunk of
      // the same stream: what the tap takes over in is the rest of a frame ws began, and is ws's
      const decoy = Buffer.concat(framesOf(Buffer.from('not a chunk')))
      const second = wireTailedAttachment(decoy, 1000, eio3)
      chunks[1] = second.chunk
      // one write: the first chunk, which has the connection tapped, and the second up to its decoy
      const header2 = clientFrame(OPCODE.TEXT, chunkHeader(event))
      const cut = second.frame.length - decoy.length
      raw.write(Buffer.concat([...framesOf(chunks[0]), header2, second.frame.subarray(0, cut)]))
      await until(() => r.atListener.received === chunks[0].length, 'the first chunk relayed')
      // the rest, with a ping after every chunk, in writes cut at random
      const rest = Buffer.concat([second.frame.subarray(cut), ...chunks.slice(2).flatMap((chunk) => [...framesOf(chunk), clientFrame(OPCODE.PING, 'ping')])])
      for (let at = 0; at < rest.length;) {
        const next = Math.min(rest.length, at + 1 + Math.floor(Math.random() * 700))
        raw.write(rest.subarray(at, next))
        at = next
      }
      a.client.emit(`${STREAM}error.${r.forward}`, true)
      const got = await within(r.atListener.done, 'the forward stream')
      assert.deepEqual(got, { bytes: chunks.reduce((n, c) => n + c.length, 0), chunks: 12, sha256: sha256(chunks), end: true })
      assert.equal(a.client.socket.connected, true)
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
