/**
 * src/cluster/messages.ts on its own: every kind of message between nodes
 * survives its encoding, is classified by the side that handles it, and bytes
 * that are not such a message are refused with a reason, never thrown on.
 * No Redis, no sockets: buffers in, values out.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { decodeMessage, encodeMessage, isToDialerNode, isToListenerNode, type Kind, type NodeMessage } from '../src/cluster/messages.js'

/** Every byte value, so that a chunk that went through text would not come back the same. */
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

/** One message of every kind, the chunk kinds with a binary chunk. */
const SAMPLES: Record<Kind, NodeMessage> = {
  incoming: { t: 'incoming', sid: 'sid-1', dial: 'd1', from: '/ip4/1.2.3.4/tcp/1/ws/p2p-websocket-star/ipfs/QmA', to: '/p2p/QmB', timeout: 15000 },
  emit: { t: 'emit', sid: 'sid-1', event: 'socket.io-pull-stream.accept.d1.listener', value: null },
  write: { t: 'write', sid: 'sid-1', event: 'socket.io-pull-stream.queue.d1.dialer', chunk: BINARY },
  received: { t: 'received', sid: 'sid-1', bytes: 1234 },
  pause: { t: 'pause', sid: 'sid-1' },
  resume: { t: 'resume', sid: 'sid-1' },
  end: { t: 'end', sid: 'sid-1', dial: 'd1' },
  answer: { t: 'answer', sid: 'sid-2', dial: 'd1', error: null },
  accepted: { t: 'accepted', sid: 'sid-2', dial: 'd1', name: 'd1.dialer' },
  chunk: { t: 'chunk', sid: 'sid-2', dial: 'd1', name: 'd1.listener', chunk: BINARY },
  ended: { t: 'ended', sid: 'sid-2', dial: 'd1', name: 'd1.listener', end: true },
  delivered: { t: 'delivered', sid: 'sid-2', bytes: 0 },
  closed: { t: 'closed', sid: 'sid-2', dial: 'd1' },
  taken: { t: 'taken', address: '/p2p/QmA', sid: 'sid-3' },
  signal: { t: 'signal', sid: 'sid-4', to: '/ip4/1.2.3.4/tcp/9090/ws/p2p-webrtc-star/p2p/QmB', offer: { intentId: 'i1', srcMultiaddr: '/ip4/1.2.3.4/tcp/9090/ws/p2p-webrtc-star/p2p/QmA', dstMultiaddr: '/ip4/1.2.3.4/tcp/9090/ws/p2p-webrtc-star/p2p/QmB', signal: { type: 'offer', sdp: 'v=0' } } },
  announce: { t: 'announce', addresses: ['/p2p/QmA', '/p2p/QmB'], fresh: 1 },
  gone: { t: 'gone', node: 'node-b' }
}

const KINDS = Object.keys(SAMPLES) as Kind[]
const LISTENER_SIDE: Kind[] = ['incoming', 'emit', 'write', 'received', 'pause', 'resume', 'end']
const DIALER_SIDE: Kind[] = ['answer', 'accepted', 'chunk', 'ended', 'delivered', 'closed']
const CHUNK_KINDS: Kind[] = ['write', 'chunk']

/** A buffer laid out as on the wire: 4-byte big-endian length, header text, then `tail`. */
function wire (header: string | Buffer, tail: Buffer = Buffer.alloc(0), length?: number): Buffer {
  const text = Buffer.isBuffer(header) ? header : Buffer.from(header)
  const prefix = Buffer.alloc(4)
  prefix.writeUInt32BE(length ?? text.length)
  return Buffer.concat([prefix, text, tail])
}

/** A message's header fields, with its sender, as a JSON header on the wire. */
function rawHeader (fields: Record<string, unknown>, tail?: Buffer): Buffer {
  return wire(JSON.stringify(fields), tail)
}

/** The header fields of a sample (its chunk travels after the header). */
function headerOf (kind: Kind): Record<string, unknown> {
  const fields: Record<string, unknown> = { ...SAMPLES[kind], sender: 'node-a' }
  delete fields.chunk
  return fields
}

function refused (raw: Buffer, pattern: RegExp): void {
  const result = decodeMessage(raw)
  assert.ok('error' in result, `expected a refusal, got ${JSON.stringify(result)}`)
  assert.equal(typeof result.error, 'string')
  assert.match(result.error, pattern)
}

function decoded (raw: Buffer): { from: string, message: NodeMessage } {
  const result = decodeMessage(raw)
  if ('error' in result) assert.fail(`refused: ${result.error}`)
  return result
}

describe('node messages: encoding', () => {
  for (const kind of KINDS) {
    it(`round-trips ${kind}`, () => {
      const message = SAMPLES[kind]
      const result = decoded(encodeMessage('node-a', message))
      assert.equal(result.from, 'node-a')
      assert.deepEqual(result.message, message)
    })
  }

  it('starts with the header length, big-endian, then the JSON header with the sender, then the chunk', () => {
    const raw = encodeMessage('node-a', SAMPLES.write)
    const length = raw.readUInt32BE(0)
    const header = JSON.parse(raw.subarray(4, 4 + length).toString()) as Record<string, unknown>
    assert.deepEqual(header, headerOf('write'))
    assert.equal('chunk' in header, false)
    assert.deepEqual(raw.subarray(4 + length), BINARY)
    assert.equal(raw.length, 4 + length + 256)
  })

  it('ends with the header for a kind without a chunk', () => {
    const raw = encodeMessage('node-a', SAMPLES.pause)
    assert.equal(raw.length, 4 + raw.readUInt32BE(0))
  })

  for (const kind of CHUNK_KINDS) {
    it(`keeps ${kind} chunks byte for byte: empty, binary, and bytes that look like JSON`, () => {
      for (const chunk of [Buffer.alloc(0), BINARY, Buffer.from('{"t":"pause"}'), Buffer.from([0, 0, 0, 0]), Buffer.alloc(70000, 0xff)]) {
        const message = { ...SAMPLES[kind], chunk } as NodeMessage
        const result = decoded(encodeMessage('node-a', message))
        assert.ok('chunk' in result.message)
        assert.equal(Buffer.isBuffer(result.message.chunk), true)
        assert.equal(result.message.chunk.length, chunk.length)
        assert.equal(Buffer.compare(result.message.chunk, chunk), 0)
        assert.deepEqual(result.message, message)
      }
    })
  }

  it('round-trips every value of the optional and union fields', () => {
    const variants: NodeMessage[] = [
      { t: 'emit', sid: 's', event: 'socket.io-pull-stream.error.d.dialer', value: true },
      { t: 'emit', sid: 's', event: 'socket.io-pull-stream.error.d.dialer', value: 'Dial timeout' },
      { t: 'emit', sid: 's', event: 'socket.io-pull-stream.error.d.dialer', value: '' },
      { t: 'answer', sid: 's', dial: 'd', error: 'Dial refused' },
      { t: 'answer', sid: 's', dial: 'd', error: '' },
      { t: 'ended', sid: 's', dial: 'd', name: 'd.dialer', end: 'Stream error' },
      { t: 'announce', addresses: [], fresh: 0 },
      { t: 'received', sid: '', bytes: Number.MAX_SAFE_INTEGER },
      { t: 'gone', node: 'ünïcødé ☃ node' }
    ]
    for (const message of variants) {
      const result = decoded(encodeMessage('n', message))
      assert.equal(result.from, 'n')
      assert.deepEqual(result.message, message)
    }
  })

  it('keeps the sender apart from the fields, even when it looks like one', () => {
    const result = decoded(encodeMessage('node-with-"quotes"', SAMPLES.gone))
    assert.equal(result.from, 'node-with-"quotes"')
    assert.deepEqual(result.message, { t: 'gone', node: 'node-b' })
  })
})

describe('node messages: which node handles which kind', () => {
  for (const kind of KINDS) {
    const toListener = LISTENER_SIDE.includes(kind)
    const toDialer = DIALER_SIDE.includes(kind)
    it(`${kind}: ${toListener ? 'to the listener\'s node' : toDialer ? 'to the dialer\'s node' : 'neither'}`, () => {
      assert.equal(isToListenerNode(SAMPLES[kind]), toListener)
      assert.equal(isToDialerNode(SAMPLES[kind]), toDialer)
    })
  }

  it('classifies the decoded message the same way', () => {
    for (const kind of KINDS) {
      const { message } = decoded(encodeMessage('x', SAMPLES[kind]))
      assert.equal(isToListenerNode(message), LISTENER_SIDE.includes(kind), kind)
      assert.equal(isToDialerNode(message), DIALER_SIDE.includes(kind), kind)
    }
  })

  it('lists every kind on at most one side', () => {
    assert.equal(LISTENER_SIDE.filter((kind) => DIALER_SIDE.includes(kind)).length, 0)
    assert.equal(KINDS.filter((kind) => isToListenerNode(SAMPLES[kind]) && isToDialerNode(SAMPLES[kind])).length, 0)
  })
})

describe('node messages: refusals', () => {
  it('refuses a buffer shorter than the length prefix', () => {
    refused(Buffer.alloc(0), /too short/)
    refused(Buffer.from([0]), /too short/)
    refused(Buffer.from([0, 0, 0]), /too short/)
  })

  it('refuses a header length past the end of the buffer', () => {
    const header = JSON.stringify(headerOf('pause'))
    refused(wire(header, undefined, header.length + 1), /header cut short/)
    refused(wire(header, undefined, 0xffffffff), /header cut short/)
    refused(Buffer.from([0, 0, 0, 1]), /header cut short/)
  })

  it('refuses a header that is not JSON', () => {
    refused(wire('not json{'), /not JSON/)
    refused(wire(''), /not JSON/)
    refused(wire(Buffer.from([0xff, 0xfe, 0x00])), /not JSON/)
    // the header's length cuts a valid JSON text short
    const header = JSON.stringify(headerOf('pause'))
    refused(wire(header, undefined, header.length - 1).subarray(0, 4 + header.length - 1), /not JSON/)
  })

  it('refuses a header that is not an object', () => {
    for (const text of ['5', '"pause"', 'null', 'true']) refused(wire(text), /not an object/)
  })

  it('refuses a header without a sender, or with a sender that is not a string', () => {
    const fields = headerOf('pause')
    delete fields.sender
    refused(rawHeader(fields), /no sender/)
    refused(rawHeader({ ...fields, sender: 5 }), /no sender/)
    refused(rawHeader({ ...fields, sender: null }), /no sender/)
    refused(rawHeader({ ...fields, sender: ['node-a'] }), /no sender/)
    refused(wire('[]'), /no sender/)
  })

  it('refuses an unknown kind, a missing one, and names inherited from Object.prototype', () => {
    for (const t of ['bogus', 'PAUSE', '', 5, null, 'toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      refused(rawHeader({ t, sid: 's', sender: 'node-a' }), /unknown kind/)
    }
    refused(rawHeader({ sid: 's', sender: 'node-a' }), /unknown kind/)
    // a __proto__ key written out in JSON becomes an own property of the parsed header
    refused(wire('{"__proto__":{"t":"pause"},"sid":"s","sender":"node-a"}'), /unknown kind/)
  })

  for (const kind of KINDS) {
    const fields = Object.keys(headerOf(kind)).filter((field) => field !== 't' && field !== 'sender')
    it(`refuses ${kind} without any one of its fields (${fields.join(', ')})`, () => {
      for (const field of fields) {
        const header = Object.fromEntries(Object.entries(headerOf(kind)).filter(([key]) => key !== field))
        const tail = CHUNK_KINDS.includes(kind) ? BINARY : undefined
        refused(rawHeader(header, tail), new RegExp(`^${kind}: bad or missing ${field}$`))
      }
    })
  }

  it('refuses fields of the wrong type', () => {
    const cases: Array<[Kind, string, unknown]> = [
      ['received', 'bytes', -1],
      ['received', 'bytes', 1.5],
      ['received', 'bytes', '3'],
      ['received', 'bytes', 2 ** 53],
      ['received', 'bytes', null],
      ['delivered', 'bytes', -0.5],
      ['incoming', 'timeout', -100],
      ['incoming', 'timeout', '15000'],
      ['incoming', 'from', 1],
      ['announce', 'addresses', [1]],
      ['announce', 'addresses', ['/p2p/QmA', null]],
      ['announce', 'addresses', '/p2p/QmA'],
      ['announce', 'addresses', { 0: '/p2p/QmA', length: 1 }],
      ['announce', 'fresh', -1],
      ['emit', 'event', 'accept.d1.listener'],
      ['emit', 'event', 'socket.io-pull-stream'],
      ['emit', 'event', 5],
      ['emit', 'value', false],
      ['emit', 'value', 5],
      ['emit', 'value', {}],
      ['write', 'event', 'queue.d1.dialer'],
      ['answer', 'error', 5],
      ['answer', 'error', true],
      ['answer', 'error', false],
      ['ended', 'end', false],
      ['ended', 'end', null],
      ['ended', 'end', 0],
      ['pause', 'sid', 5],
      ['taken', 'address', ['/p2p/QmA']],
      ['gone', 'node', {}]
    ]
    for (const [kind, field, value] of cases) {
      const tail = CHUNK_KINDS.includes(kind) ? BINARY : undefined
      refused(rawHeader({ ...headerOf(kind), [field]: value }, tail), new RegExp(`^${kind}: bad or missing ${field}$`))
    }
  })

  it('refuses bytes after the header for a kind without a chunk', () => {
    for (const kind of KINDS.filter((k) => !CHUNK_KINDS.includes(k))) {
      const raw = Buffer.concat([encodeMessage('node-a', SAMPLES[kind]), Buffer.from([0])])
      refused(raw, new RegExp(`^${kind}: unexpected bytes after the header$`))
    }
  })

  it('takes the chunk from the bytes after the header, never from a chunk field in the header', () => {
    const result = decoded(rawHeader({ ...headerOf('chunk'), chunk: 'fake' }, Buffer.from([1, 2, 3])))
    assert.ok('chunk' in result.message)
    assert.deepEqual(result.message.chunk, Buffer.from([1, 2, 3]))
  })

  it('passes on only the fields of the kind, dropping any other', () => {
    const result = decoded(rawHeader({ ...headerOf('pause'), extra: { deep: true }, chunk: 'x', from: 'a' }))
    assert.deepEqual(result.message, SAMPLES.pause)
  })
})

describe('node messages: untrusted bytes', () => {
  /** A decode result is one of the two shapes, whatever came in. */
  function wellFormed (raw: Buffer): void {
    const result = decodeMessage(raw)
    if ('error' in result) {
      assert.equal(typeof result.error, 'string')
      assert.ok(result.error.length > 0)
    } else {
      assert.equal(typeof result.from, 'string')
      assert.ok(KINDS.includes(result.message.t))
    }
  }

  it('never throws on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      wellFormed(Buffer.from(bytes))
    }), { numRuns: 2000 })
  })

  it('never throws on a well-framed random JSON header', () => {
    fc.assert(fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 16 }), (value, tail) => {
      wellFormed(rawHeader(value as Record<string, unknown>, Buffer.from(tail)))
    }), { numRuns: 1000 })
  })

  it('never throws on a known kind with random fields, and what it accepts encodes back the same', () => {
    const field = fc.oneof(fc.jsonValue(), fc.constant(undefined))
    const header = fc.record({
      t: fc.constantFrom(...KINDS),
      sender: fc.oneof(fc.string(), fc.integer()),
      sid: field,
      dial: field,
      bytes: fc.oneof(fc.nat(), fc.integer(), fc.double()),
      event: fc.oneof(fc.string(), fc.string().map((s) => `socket.io-pull-stream.${s}`)),
      value: field,
      error: field,
      end: field,
      addresses: fc.oneof(fc.array(fc.string()), field),
      fresh: field
    }, { requiredKeys: ['t', 'sender'] })
    fc.assert(fc.property(header, fc.uint8Array({ maxLength: 8 }), (fields, tail) => {
      const raw = rawHeader(fields, Buffer.from(tail))
      wellFormed(raw)
      const result = decodeMessage(raw)
      if (!('error' in result)) {
        const again = decodeMessage(encodeMessage(result.from, result.message))
        assert.deepEqual(again, result)
      }
    }), { numRuns: 1000 })
  })

  it('never throws on a valid message with bytes flipped', () => {
    const raws = KINDS.map((kind) => encodeMessage('node-a', SAMPLES[kind]))
    fc.assert(fc.property(fc.constantFrom(...raws), fc.nat(), fc.integer({ min: 0, max: 255 }), (raw, at, byte) => {
      const copy = Buffer.from(raw)
      copy[at % copy.length] = byte
      wellFormed(copy)
    }), { numRuns: 2000 })
  })
})
