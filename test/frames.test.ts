/**
 * src/engine.ts `encodeTextFrames`, `frameHeader` and `binaryEventHeader` on
 * their own: the frames the fan-out and the relay write straight to a
 * websocket's TCP socket, read back by `ws`'s own parser in
 * client mode (which takes unmasked server frames, and refuses masked ones),
 * at the boundaries of the three payload length encodings (7 bits, 16 bits,
 * 64 bits). No sockets: buffers in, messages out.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as ws from 'ws'
import { Encoder, PacketType } from 'socket.io-parser'
import { chunkEventOf } from '../src/chunk-frames.js'
import { binaryEventHeader, encodeTextFrames, frameHeader } from '../src/engine.js'

/** `ws`'s frame parser, which @types/ws leaves out: a Writable emitting `message` (data, isBinary). */
interface FrameReceiver {
  on: ((event: 'message', listener: (data: Buffer, isBinary: boolean) => void) => this) & ((event: 'error', listener: (error: Error) => void) => this)
  write: (chunk: Buffer, callback: (error?: Error | null) => void) => boolean
}
const { Receiver } = ws as unknown as { Receiver: new (options: { isServer: boolean }) => FrameReceiver }

interface Message { data: Buffer, isBinary: boolean }

/** Parses `bytes` as a client would, written in `pieces` parts; rejects on a protocol error. */
async function parse (bytes: Buffer, pieces = 1): Promise<Message[]> {
  const receiver = new Receiver({ isServer: false })
  const messages: Message[] = []
  let failure: Error | undefined
  receiver.on('message', (data, isBinary) => { messages.push({ data: Buffer.from(data), isBinary }) })
  receiver.on('error', (error) => { failure = error })
  const size = Math.ceil(bytes.length / pieces)
  for (let at = 0; at < bytes.length; at += size) {
    const piece = bytes.subarray(at, at + size)
    await new Promise<void>((resolve, reject) => {
      receiver.write(piece, (error) => { if (error !== undefined && error !== null) reject(error); else resolve() })
    })
  }
  if (failure !== undefined) throw failure
  return messages
}

/** A text payload of `length` bytes, different at every position so that a shifted frame shows. */
function payload (length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length)
  for (let i = 0; i < length; i++) bytes[i] = 0x21 + ((i * 7 + seed) % 90)
  return bytes
}

const LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]

/** Header bytes of an unmasked frame of `length` payload bytes. */
function headerSize (length: number): number {
  return length <= 125 ? 2 : length <= 65535 ? 4 : 10
}

describe('encodeTextFrames', () => {
  it('returns no frames for no payloads', async () => {
    const { buffer, offsets } = encodeTextFrames([])
    assert.equal(buffer.length, 0)
    assert.deepEqual(offsets, [0])
    assert.deepEqual(await parse(buffer), [])
  })

  it('encodes every payload as one final unmasked text frame, in order, in one buffer', async () => {
    const payloads = LENGTHS.map((length, i) => payload(length, i))
    const { buffer, offsets } = encodeTextFrames(payloads)
    assert.ok(Buffer.isBuffer(buffer))
    assert.equal(offsets.length, payloads.length + 1)
    assert.equal(offsets[0], 0)
    assert.equal(offsets.at(-1), buffer.length)
    const total = LENGTHS.reduce((sum, length) => sum + headerSize(length) + length, 0)
    assert.equal(buffer.length, total)
    const messages = await parse(buffer)
    assert.equal(messages.length, payloads.length)
    messages.forEach((message, i) => {
      assert.equal(message.isBinary, false, `frame ${i} is not text`)
      assert.equal(message.data.length, LENGTHS[i], `frame ${i} length`)
      assert.equal(Buffer.compare(message.data, payloads[i]), 0, `frame ${i} payload`)
    })
  })

  it('gives frames that a reader taking them in small pieces reads the same', async () => {
    const payloads = LENGTHS.map((length, i) => payload(length, i + 3))
    const { buffer } = encodeTextFrames(payloads)
    const messages = await parse(buffer, 97)
    assert.deepEqual(messages.map((m) => m.data.toString()), payloads.map((p) => p.toString()))
  })

  for (const length of LENGTHS) {
    it(`makes offsets[i]..offsets[i+1] exactly frame i, for a ${length}-byte payload among others`, async () => {
      const payloads = [payload(3, 1), payload(length, 2), payload(200, 3)]
      const { buffer, offsets } = encodeTextFrames(payloads)
      assert.deepEqual(offsets, [
        0,
        2 + 3,
        2 + 3 + headerSize(length) + length,
        2 + 3 + headerSize(length) + length + 4 + 200
      ])
      for (let i = 0; i < payloads.length; i++) {
        const slice = buffer.subarray(offsets[i], offsets[i + 1])
        // FIN set, opcode 1 (text), no RSV bits; no mask bit
        assert.equal(slice[0], 0x81)
        assert.equal(slice[1] & 0x80, 0)
        const messages = await parse(slice)
        assert.equal(messages.length, 1, `slice ${i} holds one frame`)
        assert.equal(messages[0]?.isBinary, false)
        assert.equal(Buffer.compare(messages[0]?.data ?? Buffer.alloc(0), payloads[i]), 0, `slice ${i} payload`)
      }
    })
  }

  it('writes the length in the smallest of the three encodings', () => {
    for (const length of LENGTHS) {
      const { buffer } = encodeTextFrames([payload(length, 0)])
      assert.equal(buffer.length, headerSize(length) + length, `${length}`)
      const code = buffer[1] & 0x7f
      if (length <= 125) assert.equal(code, length)
      else if (length <= 65535) {
        assert.equal(code, 126)
        assert.equal(buffer.readUInt16BE(2), length)
      } else {
        assert.equal(code, 127)
        assert.equal(buffer.readBigUInt64BE(2), BigInt(length))
      }
    }
  })

  it('copies payloads: changing one afterwards does not change the frames', async () => {
    const original = Buffer.from('42["ws-peer","/p2p/QmA"]')
    const copy = Buffer.from(original)
    const { buffer } = encodeTextFrames([original])
    original.fill(0x20)
    const [message] = await parse(buffer)
    assert.equal(message.data.toString(), copy.toString())
  })

  it('carries multi-byte UTF-8 text intact', async () => {
    const text = '42["ws-peer","/dns4/ünïcødé.example/tcp/443/wss/p2p-websocket-star/ipfs/Qm☃"]'
    const { buffer } = encodeTextFrames([Buffer.from(text), Buffer.from(text.repeat(10))])
    const messages = await parse(buffer)
    assert.deepEqual(messages.map((m) => m.data.toString()), [text, text.repeat(10)])
  })

  it('is refused by a server-mode parser (the frames are unmasked, as a server sends them)', async () => {
    const { buffer } = encodeTextFrames([Buffer.from('x')])
    const receiver = new Receiver({ isServer: true })
    const error = await new Promise<Error | null | undefined>((resolve) => {
      receiver.on('error', resolve)
      receiver.write(buffer, resolve)
    })
    assert.ok(error instanceof Error)
    assert.match(error.message, /MASK must be set/)
  })
})

describe('frameHeader and binaryEventHeader', () => {
  it('frame a binary payload written after its header, at each length encoding, as ws reads it', async () => {
    for (const length of [0, 1, 125, 126, 65_535, 65_536, 65_537]) {
      const payload = Buffer.alloc(length, length % 251)
      const [message, ...rest] = await parse(Buffer.concat([frameHeader(0x02, length), payload]))
      assert.deepEqual(rest, [], String(length))
      assert.equal(message.isBinary, true)
      assert.equal(message.data.equals(payload), true, String(length))
    }
  })

  it('open a binary event as socket.io-parser encodes it, for any event name', async () => {
    const encoder = new Encoder()
    for (const event of ['socket.io-pull-stream.queue.d1.dialer', 'socket.io-pull-stream.queue."odd\\name"']) {
      const encoded: unknown[] = encoder.encode({ type: PacketType.EVENT, nsp: '/', data: [event, Buffer.from('x')] })
      const [message] = await parse(binaryEventHeader(event))
      assert.equal(message.isBinary, false)
      assert.equal(message.data.toString(), `4${String(encoded[0])}`)
    }
  })
})

describe('chunkEventOf', () => {
  const encoder = new Encoder()
  /** The header text message of a chunk on `event` as the clients write it (socket.io-parser, behind Engine.IO's message type). */
  const written = (event: string, id?: number): Buffer => {
    const encoded: unknown[] = encoder.encode({ type: PacketType.EVENT, nsp: '/', data: [event, Buffer.from('x')], ...(id !== undefined ? { id } : {}) })
    return Buffer.from(`4${String(encoded[0])}`)
  }

  it('reads the event of a chunk header as the clients write it', () => {
    for (const event of ['socket.io-pull-stream.queue.d1.dialer', `socket.io-pull-stream.queue.${'x'.repeat(200)}.listener`]) {
      assert.equal(chunkEventOf(written(event)), event)
    }
  })

  it('leaves to Socket.IO what it would have to unescape, acks, other events and other namespaces', () => {
    const refused = [
      written('socket.io-pull-stream.queue."odd\\name"'),
      written('socket.io-pull-stream.queue.é'),
      written('socket.io-pull-stream.queue.d1.dialer', 7),
      written('ss-dial'),
      written('socket.io-pull-stream.'),
      Buffer.from('451-/other,["socket.io-pull-stream.queue.d1.dialer",{"_placeholder":true,"num":0}]'),
      Buffer.from('452-["socket.io-pull-stream.queue.d1.dialer",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'),
      Buffer.from('451-["socket.io-pull-stream.queue.d1.dialer",{"num":0,"_placeholder":true}]'),
      written(`socket.io-pull-stream.queue.${'x'.repeat(400)}`)
    ]
    for (const header of refused) assert.equal(chunkEventOf(header), undefined, header.toString())
  })
})
