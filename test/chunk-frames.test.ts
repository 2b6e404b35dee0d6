/**
 * src/chunk-frames.ts: a websocket peer's incoming bytes, as a client masks
 * them, split into frames. A relayed chunk's two frames are taken out and
 * unmasked, in the pieces they arrived in; every other byte reaches `ws` as
 * it came, which its own parser (`ws`'s Receiver, server side) reads as the
 * same messages. Each case is fed whole, a byte at a time and at every split
 * in two, since a socket read may end anywhere.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import * as ws from 'ws'
import { ChunkFrames, OPCODE, type ChunkFramesOptions } from '../src/chunk-frames.js'
import { wholeChunk, type StreamEventName } from '../src/protocol.js'
import { chunkHeader, chunkFrames, clientFrame, type FrameOptions } from './helpers/client-frames.js'

/** `ws`'s parser of incoming frames, which @types/ws leaves out. */
const { Receiver } = ws as unknown as { Receiver: new (options: object) => NodeJS.WritableStream & NodeJS.EventEmitter }

const EVENT = 'socket.io-pull-stream.queue.d1.listener' as StreamEventName
const HEADER = chunkHeader(EVENT)

const text = (payload: string, options?: FrameOptions): Buffer => clientFrame(OPCODE.TEXT, payload, options)
const binary = (payload: Buffer, options?: FrameOptions): Buffer => clientFrame(OPCODE.BINARY, payload, options)
const eio3Chunk = (bytes: Buffer, event: string = EVENT): Buffer[] => chunkFrames(event, bytes)
/** Another stream's event, whose header has the same length. */
const OTHER = 'socket.io-pull-stream.queue.d2.listener' as StreamEventName

interface Seen {
  passed: Buffer
  chunks: Array<[string, Buffer]>
  /** The largest number of pieces one chunk came in. */
  pieces: number
}

/** Feeds `input` cut at `cuts`, and collects what was passed and what was taken. */
function feed (input: Buffer, cuts: number[], options: Partial<ChunkFramesOptions> = {}, open = (): boolean => true): Seen {
  const passed: Buffer[] = []
  const chunks: Array<[string, Buffer]> = []
  let pieces = 0
  const frames = new ChunkFrames({
    pass: (bytes) => { passed.push(Buffer.from(bytes)) },
    chunk: (event, chunk) => {
      pieces = Math.max(pieces, 'parts' in chunk ? chunk.parts.length : 1)
      chunks.push([event, Buffer.from(wholeChunk(chunk))])
    },
    open
  }, { eio3: true, maxPayload: 0, ...options })
  let at = 0
  for (const cut of [...cuts, input.length]) {
    // each read is a buffer of its own, as a socket's are
    frames.push(Buffer.from(input.subarray(at, cut)))
    at = cut
  }
  return { passed: Buffer.concat(passed), chunks, pieces }
}

/** The ways one input may be read: whole, a byte at a time, and split in two at every offset. */
function readings (length: number): number[][] {
  const ways: number[][] = [[], Array.from({ length: length - 1 }, (_, i) => i + 1)]
  for (let i = 1; i < length; i++) ways.push([i])
  return ways
}

/** What `ws`'s own parser makes of bytes: its messages, as [text or binary, content], and the error it closes with. */
async function parse (bytes: Buffer, maxPayload = 0): Promise<{ messages: Array<[string, string]>, error?: string }> {
  const receiver = new Receiver({ isServer: true, maxPayload })
  const messages: Array<[string, string]> = []
  let error: string | undefined
  receiver.on('message', (data: Buffer, isBinary: boolean) => { messages.push([isBinary ? 'binary' : 'text', isBinary ? data.toString('hex') : data.toString()]) })
  receiver.on('ping', () => { messages.push(['ping', '']) })
  receiver.on('conclude', (code: number) => { messages.push(['close', String(code)]) })
  receiver.on('error', (err: Error & { code?: string }) => { error = err.code })
  // it unmasks in place: a copy, so that the caller's bytes stay as they were
  receiver.write(Buffer.from(bytes))
  // a stream's error is emitted on a later tick
  await new Promise((resolve) => setImmediate(resolve))
  return { messages, error }
}

describe('ChunkFrames', () => {
  it('takes each relayed chunk out whole and unmasked, and passes every other frame as it came, however the bytes are cut', async () => {
    const one = randomBytes(300)
    const two = randomBytes(5)
    const others = [text('2'), text('42["ss-join","/ip4/1.2.3.4"]'), clientFrame(OPCODE.PING, 'hi'), text('42["a",'.padEnd(200, 'x') + '"]')]
    const three = randomBytes(1)
    const input = Buffer.concat([others[0], ...eio3Chunk(one), others[1], others[2], ...eio3Chunk(two), ...eio3Chunk(three, OTHER), others[3]])
    for (const cuts of readings(input.length)) {
      const seen = feed(input, cuts)
      assert.deepEqual(seen.chunks, [[EVENT, one], [EVENT, two], [OTHER, three]], `cut at ${cuts.join(',')}`)
      assert.deepEqual(seen.passed, Buffer.concat(others), `cut at ${cuts.join(',')}`)
    }
    assert.deepEqual((await parse(Buffer.concat(others))).messages, [['text', '2'], ['text', '42["ss-join","/ip4/1.2.3.4"]'], ['ping', ''], ['text', '42["a",'.padEnd(200, 'x') + '"]']])
  })

  it('hands a chunk that spans reads on in the pieces it came in, none copied into one', () => {
    const bytes = randomBytes(64 * 1024)
    const input = Buffer.concat(eio3Chunk(bytes))
    const seen = feed(input, [1000, 40_000])
    assert.deepEqual(seen.chunks, [[EVENT, bytes]])
    assert.equal(seen.pieces, 3)
    assert.equal(feed(input, []).pieces, 1)
  })

  it('reads 16- and 64-bit lengths', () => {
    for (const length of [125, 126, 0xffff, 0x10000, 200_000]) {
      const bytes = randomBytes(length)
      const seen = feed(Buffer.concat(eio3Chunk(bytes)), [3, 9, 70])
      assert.equal(seen.chunks.length, 1, `length ${length}`)
      assert.deepEqual(seen.chunks[0][1], bytes, `length ${length}`)
    }
  })

  it('passes a header not followed by its attachment, and then the frame that followed, as they came', () => {
    const cases = [
      [text(HEADER), text('42["x"]')],
      [text(HEADER), binary(Buffer.from([4, 1, 2]), { fin: false }), clientFrame(OPCODE.CONTINUATION, Buffer.from([3]))],
      [text(HEADER), binary(Buffer.from([3, 1, 2]))], // not Engine.IO 3's message type
      [text(HEADER), text(HEADER), binary(Buffer.from([4, 9]))]
    ]
    for (const [index, frames] of cases.entries()) {
      const input = Buffer.concat(frames)
      for (const cuts of readings(input.length)) {
        const seen = feed(input, cuts)
        if (index === 3) {
          // the second header is the chunk's: the first alone goes to ws
          assert.deepEqual(seen.chunks, [[EVENT, Buffer.from([9])]])
          assert.deepEqual(seen.passed, frames[0])
        } else {
          assert.deepEqual(seen.chunks, [])
          assert.deepEqual(seen.passed, input)
        }
      }
    }
  })

  it('leaves fragmented messages, headers it does not read and escaped names to ws', () => {
    const cases = [
      [text('451-["socket.io-pull-stream.queue.d1', { fin: false }), clientFrame(OPCODE.CONTINUATION, '.listener",{"_placeholder":true,"num":0}]'), binary(Buffer.from([4, 1]))],
      [text(HEADER.replace('.d1.', '\\u002ed1.')), binary(Buffer.from([4, 1]))],
      [text(HEADER.replace('451-', '451-/other,')), binary(Buffer.from([4, 1]))],
      [text(HEADER.replace('451-', '4511-')), binary(Buffer.from([4, 1]))],
      [text(HEADER, { rsv: 0x40 }), binary(Buffer.from([4, 1]))]
    ]
    for (const frames of cases) {
      const input = Buffer.concat(frames)
      const seen = feed(input, [5])
      assert.deepEqual(seen.chunks, [])
      assert.deepEqual(seen.passed, input)
    }
  })

  it('passes everything after a close frame, or after a frame ws refuses, for ws to deal with', async () => {
    const after = eio3Chunk(Buffer.from('late'))
    for (const first of [clientFrame(OPCODE.CLOSE, Buffer.from([0x03, 0xe8])), text('2', { masked: false }), clientFrame(0x03, 'x'), text('2', { rsv: 0x20 })]) {
      const input = Buffer.concat([first, ...after])
      const seen = feed(input, [1, 4])
      assert.deepEqual(seen.chunks, [])
      assert.deepEqual(seen.passed, input)
    }
    assert.equal((await parse(text('2', { masked: false }))).error, 'WS_ERR_EXPECTED_MASK')
  })

  it('passes an attachment larger than ws allows, which ws then refuses', async () => {
    const input = Buffer.concat(eio3Chunk(randomBytes(2000)))
    const seen = feed(input, [7], { maxPayload: 1000 })
    assert.deepEqual(seen.chunks, [])
    assert.deepEqual(seen.passed, input)
    assert.equal((await parse(input, 1000)).error, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')
    assert.equal(feed(input, [7], { maxPayload: 2001 }).chunks.length, 1)
  })

  it('passes what it holds once it holds as many reads as ws would, for ws to refuse', async () => {
    const input = Buffer.concat(eio3Chunk(randomBytes(100)))
    const cuts = Array.from({ length: 20 }, (_, i) => 90 + i)
    const seen = feed(input, cuts, { maxHeldReads: 8 })
    assert.deepEqual(seen.chunks, [])
    assert.deepEqual(seen.passed, input)
    assert.equal(feed(input, cuts, { maxHeldReads: 30 }).chunks.length, 1)
    // ws, fed the same reads, refuses them past its bound
    const receiver = new Receiver({ isServer: true, maxBufferedChunks: 8 })
    let error: string | undefined
    receiver.on('error', (err: Error & { code?: string }) => { error = err.code })
    let at = 0
    for (const cut of [...cuts, input.length]) {
      receiver.write(Buffer.from(input.subarray(at, cut)))
      at = cut
    }
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(error, 'WS_ERR_TOO_MANY_BUFFERED_PARTS')
  })

  it('passes chunks while the connection is not open', () => {
    const input = Buffer.concat(eio3Chunk(Buffer.from('x')))
    const seen = feed(input, [], {}, () => false)
    assert.deepEqual(seen.chunks, [])
    assert.deepEqual(seen.passed, input)
  })

  it('reads Engine.IO 4 attachments, which have no type byte', () => {
    const bytes = randomBytes(100)
    const seen = feed(Buffer.concat(chunkFrames(EVENT, bytes, false)), [50], { eio3: false })
    assert.deepEqual(seen.chunks, [[EVENT, bytes]])
    assert.equal(seen.passed.length, 0)
  })

  it('first gives ws the rest of a frame it had begun', () => {
    const rest = Buffer.from('the end of a frame ws was reading')
    const bytes = randomBytes(10)
    const pong = text('3')
    const input = Buffer.concat([rest, ...eio3Chunk(bytes), pong])
    for (const cuts of readings(input.length)) {
      const seen = feed(input, cuts, { owed: rest.length })
      assert.deepEqual(seen.chunks, [[EVENT, bytes]])
      assert.deepEqual(seen.passed, Buffer.concat([rest, pong]))
    }
  })
})
