/**
 * src/relay/dial.ts and src/relay/parties.ts on their own: one dial's life
 * between two parties over fake endpoints that record every event and chunk
 * sent to them, with a context that records the relay's accounts, on
 * node:test's mock clock. No sockets: what each side would have received is
 * read off its fake endpoint.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import { MAX_PEER_ERROR_LENGTH } from '../src/constants.js'
import { ERRORS, wholeChunk, type Chunk, type StreamEventName } from '../src/protocol.js'
import { Backpressure, type Endpoint } from '../src/relay/backpressure.js'
import { Dial, streamEvent, streamNames, type DialContext, type DialLimits, type End, type Stream } from '../src/relay/dial.js'
import { Parties, Party, chunkOf, endOf } from '../src/relay/parties.js'

const P = 'socket.io-pull-stream.'

/** What one side was sent: control events with their arguments, and chunks. */
type Sent = ['emit', string, ...Array<true | string>] | ['write', string, Buffer]

class FakeEndpoint implements Endpoint {
  backlog = 0
  isPaused = false
  readonly sent: Sent[] = []
  pauses = 0
  resumes = 0
  closes = 0
  /** The party's callback for when output may have drained. */
  drained: () => void = () => { assert.fail('no drained callback') }

  constructor (readonly id: string) {}

  emit (event: StreamEventName, ...args: Array<true | string>): void {
    this.sent.push(['emit', event, ...args])
  }

  write (event: StreamEventName, chunk: Chunk): void {
    this.sent.push(['write', event, wholeChunk(chunk)])
  }

  pause (): void {
    this.pauses++
    this.isPaused = true
  }

  resume (): void {
    this.resumes++
    this.isPaused = false
  }

  close (): void {
    this.closes++
  }

  /** The control events sent, without chunks. */
  get emitted (): Sent[] {
    return this.sent.filter(([kind]) => kind === 'emit')
  }

  /** The chunks sent, with their events. */
  get written (): Array<[string, string]> {
    return this.sent.filter(([kind]) => kind === 'write').map(([, event, chunk]) => [event, (chunk as Buffer).toString()])
  }
}

class Recorder implements DialContext {
  readonly answers: Array<[boolean, bigint]> = []
  readonly deliveries: number[] = []
  opened = 0
  closed = 0
  readonly holds: Array<[string, boolean]> = []
  readonly overs: Dial[] = []

  constructor (readonly limits: DialLimits, readonly backpressure: Backpressure) {}

  answered = (success: boolean, startedAt: bigint): void => { this.answers.push([success, startedAt]) }
  delivered = (bytes: number): void => { this.deliveries.push(bytes) }
  streamOpened = (): void => { this.opened++ }
  streamClosed = (): void => { this.closed++ }
  held = (stream: Stream, paused: boolean): void => { this.holds.push([stream.name, paused]) }
  over = (dial: Dial): void => { this.overs.push(dial) }
}

const MARKS = { relayHighWaterBytes: 1000, relayLowWaterBytes: 100 }
const LIMITS: DialLimits = { dialTimeoutMS: 10_000, maxRelayBytes: 0, maxRelayDurationMS: 0 }

interface World {
  dialer: Party
  listener: Party
  dialerEnd: FakeEndpoint
  listenerEnd: FakeEndpoint
  context: Recorder
  backpressure: Backpressure
  acks: unknown[][]
  dial: Dial
  /** Holds that resumed their sender when a party drained. */
  resumed: string[]
}

function party (key: string, backpressure: Backpressure, resumed: string[]): [Party, FakeEndpoint] {
  const endpoint = new FakeEndpoint(key)
  const made = new Party(key, (drained) => {
    endpoint.drained = drained
    return endpoint
  }, (p) => { backpressure.drained(p, (stream) => { resumed.push(stream.name) }) })
  return [made, endpoint]
}

function world (limits: Partial<DialLimits> = {}, id = 'd1'): World {
  const backpressure = new Backpressure(MARKS)
  const resumed: string[] = []
  const [dialer, dialerEnd] = party('dialer', backpressure, resumed)
  const [listener, listenerEnd] = party('listener', backpressure, resumed)
  const context = new Recorder({ ...LIMITS, ...limits }, backpressure)
  const acks: unknown[][] = []
  const ack = (...args: unknown[]): void => { acks.push(args) }
  const dial = new Dial({ id, from: '/p2p/QmDialer', to: '/p2p/QmListener', ack, startedAt: 42n }, dialer, listener, context)
  return { dialer, listener, dialerEnd, listenerEnd, context, backpressure, acks, dial, resumed }
}

function forwardOf (w: World): Stream {
  const stream = w.dialer.sending.get('d1.dialer')
  assert.ok(stream !== undefined, 'no forward stream')
  return stream
}

function backOf (w: World): Stream {
  const stream = w.listener.sending.get('d1.listener')
  assert.ok(stream !== undefined, 'no back stream')
  return stream
}

/** A dial answered and with both streams accepted. */
function established (limits: Partial<DialLimits> = {}): World {
  const w = world(limits)
  w.dial.answer(undefined)
  w.dial.accept(forwardOf(w))
  w.dial.accept(backOf(w))
  assert.equal(w.dial.state, 'established')
  return w
}

function clearSent (...endpoints: FakeEndpoint[]): void {
  for (const endpoint of endpoints) endpoint.sent.length = 0
}

function assertForgotten (w: World): void {
  for (const p of [w.dialer, w.listener]) {
    assert.equal(p.sending.size, 0, `${p.key} still sends`)
    assert.equal(p.receiving.size, 0, `${p.key} still receives`)
    assert.equal(p.dials.size, 0, `${p.key} still has dials`)
    assert.equal(p.waiting.size, 0, `${p.key} still has senders waiting`)
    assert.equal(p.streams, 0)
  }
  assert.equal(w.dial.streams.length, 0)
}

beforeEach(() => { mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] }) })
afterEach(() => { mock.timers.reset() })

describe('dial helpers', () => {
  it('names the streams and their events', () => {
    assert.deepEqual(streamNames('abc'), ['abc.dialer', 'abc.listener'])
    assert.equal(streamEvent('accept', 'abc.dialer'), `${P}accept.abc.dialer`)
    assert.equal(streamEvent('queue', 'x'), `${P}queue.x`)
    assert.equal(streamEvent('error', 'x'), `${P}error.x`)
  })

  it('reads chunks and ends as Socket.IO delivers them', () => {
    const bytes = Buffer.from([1, 2, 3, 4])
    assert.equal(chunkOf(bytes), bytes)
    assert.deepEqual(chunkOf(new Uint8Array([1, 2, 3, 4])), bytes)
    assert.deepEqual(chunkOf(new Uint8Array([0, 1, 2, 3, 4, 5]).subarray(1, 5)), bytes)
    assert.deepEqual(chunkOf(new Uint8Array([1, 2, 3, 4]).buffer), bytes)
    for (const value of ['text', 5, null, undefined, [1, 2], { type: 'Buffer', data: [1] }]) assert.equal(chunkOf(value), undefined)
    assert.equal(endOf(true), true)
    assert.equal(endOf('gone away'), 'gone away')
    assert.equal(endOf(''), ERRORS.STREAM_ERROR)
    assert.equal(endOf(false), ERRORS.STREAM_ERROR)
    assert.equal(endOf({ message: 'x' }), ERRORS.STREAM_ERROR)
    assert.equal((endOf('x'.repeat(MAX_PEER_ERROR_LENGTH + 50)) as string).length, MAX_PEER_ERROR_LENGTH)
  })
})

describe('dial: pending', () => {
  it('accepts the dialer\'s stream at once and waits for the answer', () => {
    const w = world()
    assert.equal(w.dial.state, 'pending')
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}accept.d1.dialer`]])
    assert.deepEqual(w.listenerEnd.sent, [])
    assert.deepEqual(w.acks, [])
    assert.deepEqual(w.context.answers, [])
    assert.equal(w.context.opened, 1)
    assert.equal(w.dial.streams.length, 1)
    assert.deepEqual([...w.dialer.sending.keys()], ['d1.dialer'])
    assert.deepEqual([...w.listener.receiving.keys()], ['d1.dialer'])
    assert.equal(w.dialer.receiving.size, 0)
    assert.equal(w.listener.sending.size, 0)
    assert.ok(w.dialer.dials.has(w.dial))
    assert.ok(w.listener.dials.has(w.dial))
    const forward = forwardOf(w)
    assert.equal(forward.sender, w.dialer)
    assert.equal(forward.receiver, w.listener)
    assert.equal(forward.accepted, false)
    assert.equal(w.dial.id, 'd1')
    assert.equal(w.dial.from, '/p2p/QmDialer')
    assert.equal(w.dial.to, '/p2p/QmListener')
  })
})

describe('dial: answer', () => {
  for (const answer of [undefined, null, false, '']) {
    it(`${answer === undefined ? 'undefined' : JSON.stringify(answer)} accepts: the back stream is accepted towards the listener, the ack has no arguments`, () => {
      const w = world()
      clearSent(w.dialerEnd)
      w.dial.answer(answer)
      assert.equal(w.dial.state, 'answered')
      assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}accept.d1.listener`]])
      assert.deepEqual(w.dialerEnd.sent, [])
      assert.deepEqual(w.acks, [[]])
      assert.equal(w.acks[0]?.length, 0)
      assert.deepEqual(w.context.answers, [[true, 42n]])
      assert.equal(w.context.opened, 2)
      const back = backOf(w)
      assert.equal(back.sender, w.listener)
      assert.equal(back.receiver, w.dialer)
      assert.ok(w.dialer.receiving.has('d1.listener'))
      assert.deepEqual(w.context.overs, [])
    })
  }

  it('takes the first answer only', () => {
    const w = world()
    w.dial.answer(undefined)
    w.dial.answer('no')
    w.dial.answer(undefined)
    assert.deepEqual(w.acks, [[]])
    assert.deepEqual(w.context.answers, [[true, 42n]])
    assert.equal(w.dial.state, 'answered')
    assert.equal(w.context.opened, 2)
  })

  it('refuses on anything else: ack(error), both sides hear the stream end, the dial is over', () => {
    const w = world()
    clearSent(w.dialerEnd)
    w.dial.answer('no')
    assert.deepEqual(w.acks, [['no']])
    assert.deepEqual(w.context.answers, [[false, 42n]])
    assert.equal(w.dial.state, 'ended')
    assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, true]])
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}error.d1.dialer`, true]])
    assert.deepEqual(w.context.overs, [w.dial])
    assert.equal(w.context.closed, 1)
    assertForgotten(w)
  })

  it('answers a refusal that is not a usable string with Dial refused, and bounds a long one', () => {
    for (const answer of [5, true, { error: 'x' }, ['no']]) {
      const w = world()
      w.dial.answer(answer)
      assert.deepEqual(w.acks, [[ERRORS.DIAL_REFUSED]], JSON.stringify(answer))
      assert.equal(w.dial.state, 'ended')
    }
    const w = world()
    w.dial.answer('e'.repeat(MAX_PEER_ERROR_LENGTH * 3))
    assert.deepEqual(w.acks, [['e'.repeat(MAX_PEER_ERROR_LENGTH)]])
  })
})

describe('dial: streams', () => {
  it('holds the dialer\'s chunks until the listener accepts, then delivers them in order', () => {
    const w = world()
    const forward = forwardOf(w)
    w.dial.carry(forward, Buffer.from('one'))
    w.dial.carry(forward, Buffer.from('two'))
    assert.equal(forward.pendingBytes, 6)
    w.dial.answer(undefined)
    w.dial.carry(forward, Buffer.from('three'))
    assert.deepEqual(w.listenerEnd.written, [])
    assert.deepEqual(w.context.deliveries, [])
    assert.equal(forward.queued, 11)
    w.dial.accept(forward)
    assert.deepEqual(w.listenerEnd.written, [[`${P}queue.d1.dialer`, 'one'], [`${P}queue.d1.dialer`, 'two'], [`${P}queue.d1.dialer`, 'three']])
    assert.deepEqual(w.context.deliveries, [3, 3, 5])
    assert.equal(forward.pendingBytes, 0)
    assert.deepEqual(forward.pending, [])
    // accepted: the next chunk goes straight through
    w.dial.carry(forward, Buffer.from('four'))
    const { written } = w.listenerEnd
    assert.deepEqual(written[written.length - 1], [`${P}queue.d1.dialer`, 'four'])
    assert.deepEqual(w.context.deliveries, [3, 3, 5, 4])
    assert.deepEqual(w.dialerEnd.written, [])
  })

  it('keeps the bytes intact', () => {
    const w = established()
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    w.dial.carry(backOf(w), bytes)
    const last = w.dialerEnd.sent.at(-1)
    assert.ok(last !== undefined && last[0] === 'write')
    assert.equal(last[1], `${P}queue.d1.listener`)
    assert.equal(Buffer.compare(last[2], bytes), 0)
  })

  it('is established once both streams are accepted, in either order', () => {
    const w = world()
    w.dial.answer(undefined)
    w.dial.accept(backOf(w))
    assert.equal(w.dial.state, 'answered')
    w.dial.accept(forwardOf(w))
    assert.equal(w.dial.state, 'established')
  })

  it('is not established by the forward stream\'s accept before the answer', () => {
    const w = world()
    w.dial.accept(forwardOf(w))
    assert.equal(w.dial.state, 'pending')
    w.dial.answer(undefined)
    assert.equal(w.dial.state, 'answered')
    w.dial.accept(backOf(w))
    assert.equal(w.dial.state, 'established')
  })

  it('no longer times out once established', () => {
    const w = established()
    clearSent(w.dialerEnd, w.listenerEnd)
    mock.timers.tick(LIMITS.dialTimeoutMS * 5)
    assert.equal(w.dial.state, 'established')
    assert.deepEqual(w.dialerEnd.sent, [])
    assert.deepEqual(w.listenerEnd.sent, [])
    assert.deepEqual(w.context.overs, [])
  })

  it('delivers the sender\'s end after what was held, and the dial is over once both streams ended', () => {
    const w = world()
    const forward = forwardOf(w)
    w.dial.carry(forward, Buffer.from('last words'))
    w.dial.endStream(forward, true)
    w.dial.answer(undefined)
    clearSent(w.listenerEnd)
    w.dial.accept(forward)
    assert.deepEqual(w.listenerEnd.sent.map(([kind, event, arg]) => [kind, event, Buffer.isBuffer(arg) ? arg.toString() : arg]), [
      ['write', `${P}queue.d1.dialer`, 'last words'],
      ['emit', `${P}error.d1.dialer`, true]
    ])
    assert.equal(w.dial.state, 'answered')
    assert.equal(w.context.closed, 1)
    assert.equal(w.dialer.sending.has('d1.dialer'), false)
    assert.equal(w.listener.receiving.has('d1.dialer'), false)
    assert.deepEqual(w.context.overs, [])
    // the back stream ends: nothing is left
    const back = backOf(w)
    w.dial.accept(back)
    clearSent(w.dialerEnd, w.listenerEnd)
    w.dial.endStream(back, 'bye')
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}error.d1.listener`, 'bye']])
    assert.deepEqual(w.listenerEnd.sent, [])
    assert.equal(w.dial.state, 'ended')
    assert.deepEqual(w.context.overs, [w.dial])
    assert.equal(w.context.closed, 2)
    assertForgotten(w)
  })

  it('is over when both streams of an established dial end', () => {
    const w = established()
    clearSent(w.dialerEnd, w.listenerEnd)
    w.dial.endStream(forwardOf(w), true)
    assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, true]])
    assert.equal(w.dial.state, 'established')
    assert.deepEqual(w.context.overs, [])
    w.dial.endStream(backOf(w), true)
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}error.d1.listener`, true]])
    // the ends were the last events: the dial's own end finds no stream to end
    assert.equal(w.listenerEnd.sent.length, 1)
    assert.equal(w.dialerEnd.sent.length, 1)
    assert.equal(w.dial.state, 'ended')
    assert.deepEqual(w.context.overs, [w.dial])
    assertForgotten(w)
    // and its timers are gone
    mock.timers.tick(LIMITS.dialTimeoutMS * 2)
    assert.deepEqual(w.context.overs, [w.dial])
  })
})

describe('dial: timeout', () => {
  it('refuses a dial the listener did not answer in time', () => {
    const w = world()
    clearSent(w.dialerEnd)
    mock.timers.tick(LIMITS.dialTimeoutMS - 1)
    assert.equal(w.dial.state, 'pending')
    assert.deepEqual(w.acks, [])
    mock.timers.tick(1)
    assert.deepEqual(w.acks, [[ERRORS.DIAL_TIMEOUT]])
    assert.deepEqual(w.context.answers, [[false, 42n]])
    assert.equal(w.dial.state, 'ended')
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.DIAL_TIMEOUT]])
    assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.DIAL_TIMEOUT]])
    assert.deepEqual(w.context.overs, [w.dial])
    assertForgotten(w)
    // a late answer changes nothing
    w.dial.answer(undefined)
    assert.deepEqual(w.acks, [[ERRORS.DIAL_TIMEOUT]])
    assert.deepEqual(w.listenerEnd.sent.length, 1)
  })

  it('ends an answered dial whose streams were not both accepted in time, without a second ack', () => {
    const w = world()
    w.dial.answer(undefined)
    w.dial.accept(forwardOf(w))
    clearSent(w.dialerEnd, w.listenerEnd)
    mock.timers.tick(LIMITS.dialTimeoutMS)
    assert.deepEqual(w.acks, [[]])
    assert.deepEqual(w.context.answers, [[true, 42n]])
    assert.equal(w.dial.state, 'ended')
    const timeout = (name: string): Sent => ['emit', `${P}error.${name}`, ERRORS.DIAL_TIMEOUT]
    assert.deepEqual(w.dialerEnd.sent.sort(), [timeout('d1.dialer'), timeout('d1.listener')].sort())
    assert.deepEqual(w.listenerEnd.sent.sort(), [timeout('d1.dialer'), timeout('d1.listener')].sort())
    assert.deepEqual(w.context.overs, [w.dial])
    assert.equal(w.context.closed, 2)
    assertForgotten(w)
  })

  it('counts the timeout from the dial, not from the answer', () => {
    const w = world()
    mock.timers.tick(LIMITS.dialTimeoutMS - 10)
    w.dial.answer(undefined)
    mock.timers.tick(10)
    assert.equal(w.dial.state, 'ended')
  })
})

describe('dial: limits', () => {
  it('ends a dial that relays more than maxRelayBytes, both directions together', () => {
    const w = established({ maxRelayBytes: 10 })
    w.dial.carry(forwardOf(w), Buffer.alloc(6))
    w.dial.carry(backOf(w), Buffer.alloc(4))
    assert.equal(w.dial.state, 'established')
    assert.deepEqual(w.context.deliveries, [6, 4])
    clearSent(w.dialerEnd, w.listenerEnd)
    w.dial.carry(forwardOf(w), Buffer.alloc(1))
    assert.equal(w.dial.state, 'ended')
    // the chunk over the limit is not delivered
    assert.deepEqual(w.context.deliveries, [6, 4])
    const limit = (name: string): Sent => ['emit', `${P}error.${name}`, ERRORS.RELAY_DATA_LIMIT]
    assert.deepEqual(w.dialerEnd.sent.sort(), [limit('d1.dialer'), limit('d1.listener')].sort())
    assert.deepEqual(w.listenerEnd.sent.sort(), [limit('d1.dialer'), limit('d1.listener')].sort())
    assert.deepEqual(w.context.overs, [w.dial])
    assertForgotten(w)
  })

  it('counts held bytes against maxRelayBytes too, and refuses a pending dial that exceeds it', () => {
    const w = world({ maxRelayBytes: 5 })
    w.dial.carry(forwardOf(w), Buffer.alloc(6))
    assert.equal(w.dial.state, 'ended')
    assert.deepEqual(w.acks, [[ERRORS.PEER_NOT_FOUND]])
    assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.RELAY_DATA_LIMIT]])
  })

  it('has no data limit at 0', () => {
    const w = established()
    for (let i = 0; i < 10; i++) w.dial.carry(forwardOf(w), Buffer.alloc(100_000))
    assert.equal(w.dial.state, 'established')
    assert.equal(w.context.deliveries.length, 10)
  })

  it('ends a dial maxRelayDurationMS after it is established', () => {
    const w = world({ maxRelayDurationMS: 5000 })
    mock.timers.tick(3000)
    w.dial.answer(undefined)
    w.dial.accept(forwardOf(w))
    w.dial.accept(backOf(w))
    clearSent(w.dialerEnd, w.listenerEnd)
    mock.timers.tick(4999)
    assert.equal(w.dial.state, 'established')
    assert.deepEqual(w.dialerEnd.sent, [])
    mock.timers.tick(1)
    assert.equal(w.dial.state, 'ended')
    const limit = (name: string): Sent => ['emit', `${P}error.${name}`, ERRORS.RELAY_DURATION_LIMIT]
    assert.deepEqual(w.dialerEnd.sent.sort(), [limit('d1.dialer'), limit('d1.listener')].sort())
    assert.deepEqual(w.listenerEnd.sent.sort(), [limit('d1.dialer'), limit('d1.listener')].sort())
    assert.deepEqual(w.context.overs, [w.dial])
    assertForgotten(w)
  })

  it('clears the duration timer when the dial ends first', () => {
    const w = established({ maxRelayDurationMS: 5000 })
    w.dial.end(true)
    clearSent(w.dialerEnd, w.listenerEnd)
    mock.timers.tick(10_000)
    assert.deepEqual(w.dialerEnd.sent, [])
    assert.deepEqual(w.listenerEnd.sent, [])
    assert.deepEqual(w.context.overs, [w.dial])
  })
})

describe('dial: end', () => {
  it('refuses a pending dial with Peer not found and ends its stream on both sides', () => {
    const w = world()
    clearSent(w.dialerEnd)
    w.dial.end('gone')
    assert.deepEqual(w.acks, [[ERRORS.PEER_NOT_FOUND]])
    assert.deepEqual(w.context.answers, [[false, 42n]])
    assert.deepEqual(w.dialerEnd.sent, [['emit', `${P}error.d1.dialer`, 'gone']])
    assert.deepEqual(w.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, 'gone']])
    assert.equal(w.dial.state, 'ended')
  })

  it('does not emit to the side that is gone', () => {
    const w = established()
    clearSent(w.dialerEnd, w.listenerEnd)
    w.dial.end(true, w.dialer)
    assert.deepEqual(w.dialerEnd.sent, [])
    assert.deepEqual(w.listenerEnd.sent.sort(), [['emit', `${P}error.d1.dialer`, true], ['emit', `${P}error.d1.listener`, true]].sort())
    assert.deepEqual(w.context.overs, [w.dial])
    assertForgotten(w)

    const v = established()
    clearSent(v.dialerEnd, v.listenerEnd)
    v.dial.end('x', v.listener)
    assert.deepEqual(v.listenerEnd.sent, [])
    assert.equal(v.dialerEnd.sent.length, 2)
  })

  it('is harmless twice', () => {
    const w = world()
    w.dial.end(true)
    const sent = [...w.dialerEnd.sent, ...w.listenerEnd.sent].length
    w.dial.end('again')
    w.dial.end(true, w.listener)
    assert.deepEqual(w.acks, [[ERRORS.PEER_NOT_FOUND]])
    assert.equal([...w.dialerEnd.sent, ...w.listenerEnd.sent].length, sent)
    assert.deepEqual(w.context.overs, [w.dial])
    assert.equal(w.context.opened, 1)
    assert.equal(w.context.closed, 1)
    mock.timers.tick(LIMITS.dialTimeoutMS)
    assert.deepEqual(w.context.overs, [w.dial])
    assert.deepEqual(w.acks, [[ERRORS.PEER_NOT_FOUND]])
  })

  it('opens as many streams as it closes', () => {
    for (const finish of [
      (w: World) => { w.dial.end(true) },
      (w: World) => { w.dial.answer('no') },
      () => { mock.timers.tick(LIMITS.dialTimeoutMS) },
      (w: World) => { w.dial.answer(undefined); w.dial.end(true) }
    ]) {
      const w = world()
      finish(w)
      assert.equal(w.dial.state, 'ended')
      assert.equal(w.context.closed, w.context.opened)
      assert.equal(w.context.overs.length, 1)
    }
  })
})

describe('dial: backpressure', () => {
  it('pauses the sender while the receiver is above the high-water mark, resumes when it drained', () => {
    const w = established()
    const forward = forwardOf(w)
    w.listenerEnd.backlog = 5000
    w.dial.carry(forward, Buffer.alloc(10))
    assert.equal(w.dialerEnd.pauses, 1)
    assert.equal(w.dialerEnd.isPaused, true)
    assert.deepEqual(w.context.holds, [['d1.dialer', true]])
    assert.deepEqual([...w.listener.waiting], [forward])
    // more chunks (already read) do not pause it again
    w.dial.carry(forward, Buffer.alloc(10))
    assert.equal(w.dialerEnd.pauses, 1)
    // output drained, but not enough
    w.listenerEnd.backlog = 500
    w.listenerEnd.drained()
    assert.equal(w.dialerEnd.resumes, 0)
    assert.deepEqual(w.resumed, [])
    // drained to the low-water mark
    w.listenerEnd.backlog = 100
    w.listenerEnd.drained()
    assert.equal(w.dialerEnd.resumes, 1)
    assert.equal(w.dialerEnd.isPaused, false)
    assert.deepEqual(w.resumed, ['d1.dialer'])
    assert.equal(w.listener.waiting.size, 0)
    // the other direction was never touched
    assert.equal(w.listenerEnd.pauses, 0)
  })

  it('does not pause at the high-water mark itself', () => {
    const w = established()
    w.listenerEnd.backlog = MARKS.relayHighWaterBytes
    w.dial.carry(forwardOf(w), Buffer.alloc(10))
    assert.equal(w.dialerEnd.pauses, 0)
  })

  it('pauses a sender whose held chunks pass the mark before the accept, and resumes it on the accept', () => {
    const w = world()
    const forward = forwardOf(w)
    w.dial.carry(forward, Buffer.alloc(600))
    assert.equal(w.dialerEnd.pauses, 0)
    w.dial.carry(forward, Buffer.alloc(600))
    assert.equal(w.dialerEnd.pauses, 1)
    // a drain of the receiver does not let a stream it has not accepted go
    w.listenerEnd.drained()
    assert.equal(w.dialerEnd.resumes, 0)
    w.dial.answer(undefined)
    w.dial.accept(forward)
    assert.equal(w.listenerEnd.written.length, 2)
    assert.equal(w.dialerEnd.resumes, 1)
    assert.deepEqual(w.context.holds, [['d1.dialer', true], ['d1.dialer', false]])
  })

  it('keeps holding on the accept while the receiver is behind, until it drains', () => {
    const w = world()
    const forward = forwardOf(w)
    w.dial.carry(forward, Buffer.alloc(1200))
    assert.equal(w.dialerEnd.pauses, 1)
    w.dial.answer(undefined)
    w.listenerEnd.backlog = 3000
    w.dial.accept(forward)
    assert.equal(w.dialerEnd.resumes, 0)
    w.listenerEnd.backlog = 0
    w.listenerEnd.drained()
    assert.equal(w.dialerEnd.resumes, 1)
    assert.deepEqual(w.resumed, ['d1.dialer'])
  })

  it('lets a held sender go when the dial ends', () => {
    const w = established()
    w.listenerEnd.backlog = 5000
    w.dial.carry(forwardOf(w), Buffer.alloc(10))
    assert.equal(w.dialerEnd.isPaused, true)
    w.dial.end(true)
    assert.equal(w.dialerEnd.isPaused, false)
    assert.equal(w.dialerEnd.resumes, 1)
    assert.equal(w.listener.waiting.size, 0)
  })

  it('resumes a sender held by two dials only after both let it go', () => {
    const backpressure = new Backpressure(MARKS)
    const resumed: string[] = []
    const [dialer, dialerEnd] = party('dialer', backpressure, resumed)
    const [listener, listenerEnd] = party('listener', backpressure, resumed)
    const context = new Recorder(LIMITS, backpressure)
    const dials = ['a', 'b'].map((id) => new Dial({ id, from: '/a', to: '/b', ack: () => undefined, startedAt: 0n }, dialer, listener, context))
    for (const dial of dials) {
      dial.answer(undefined)
      for (const stream of [...dial.streams]) dial.accept(stream)
    }
    listenerEnd.backlog = 5000
    for (const dial of dials) dial.carry(dialer.sending.get(`${dial.id}.dialer`) as Stream, Buffer.alloc(1))
    assert.equal(dialerEnd.pauses, 1)
    assert.equal(listener.waiting.size, 2)
    dials[0]?.end(true)
    assert.equal(dialerEnd.isPaused, true)
    listenerEnd.backlog = 0
    listenerEnd.drained()
    assert.equal(dialerEnd.isPaused, false)
    assert.deepEqual(resumed, ['b.dialer'])
  })
})

describe('Parties', () => {
  interface Setup {
    parties: Parties
    dialer: Party
    listener: Party
    dialerEnd: FakeEndpoint
    listenerEnd: FakeEndpoint
    dial: Dial
    calls: string[]
    used: Set<Party>
    context: Recorder
    /** The parties let go of, with what each relayed. */
    removed: string[]
  }

  function setup (): Setup {
    const backpressure = new Backpressure(MARKS)
    const calls: string[] = []
    const used = new Set<Party>()
    const removed: string[] = []
    const parties = new Parties({
      queue: (stream, chunk) => { calls.push(`queue ${stream.name} ${wholeChunk(chunk).toString('hex')}`); stream.dial.carry(stream, chunk) },
      end: (stream, end: End) => { calls.push(`end ${stream.name} ${String(end)}`); stream.dial.endStream(stream, end) },
      accept: (stream) => { calls.push(`accept ${stream.name}`); stream.dial.accept(stream) }
    }, (p) => { backpressure.drained(p, () => undefined) }, (p) => used.has(p), (p) => { removed.push(`${p.key} ${p.relayed}`) })
    const endpoints = new Map<string, FakeEndpoint>()
    const make = (key: string): Party => parties.open(key, () => {
      const endpoint = new FakeEndpoint(key)
      endpoints.set(key, endpoint)
      return endpoint
    })
    const dialer = make('dialer')
    const listener = make('listener')
    const context = new Recorder(LIMITS, backpressure)
    const dial = new Dial({ id: 'd1', from: '/a', to: '/b', ack: () => undefined, startedAt: 0n }, dialer, listener, context)
    dial.answer(undefined)
    return { parties, dialer, listener, dialerEnd: endpoints.get('dialer') as FakeEndpoint, listenerEnd: endpoints.get('listener') as FakeEndpoint, dial, calls, used, context, removed }
  }

  it('opens one party per key', () => {
    const s = setup()
    let made = 0
    const again = s.parties.open('dialer', () => { made++; return new FakeEndpoint('other') })
    assert.equal(again, s.dialer)
    assert.equal(made, 0)
    assert.equal(s.parties.size, 2)
    assert.equal(s.parties.get('listener'), s.listener)
    assert.equal(s.parties.get('nobody'), undefined)
    assert.deepEqual([...s.parties.values()], [s.dialer, s.listener])
  })

  it('counts a party\'s streams in both roles', () => {
    const s = setup()
    assert.equal(s.dialer.streams, 2)
    assert.equal(s.listener.streams, 2)
    assert.equal(s.dialer.has('d1.dialer'), true)
    assert.equal(s.dialer.has('d1.listener'), true)
    assert.equal(s.dialer.has('d2.dialer'), false)
  })

  it('ignores a queue on a stream the party does not send', () => {
    const s = setup()
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    s.calls.length = 0
    s.parties.dispatch(s.listener, 'queue', 'd1.dialer', Buffer.from('spoof'))
    s.parties.dispatch(s.dialer, 'queue', 'd1.listener', Buffer.from('spoof'))
    s.parties.dispatch(s.dialer, 'queue', 'nothing', Buffer.from('spoof'))
    assert.deepEqual(s.calls, [])
    assert.deepEqual(s.listenerEnd.written, [])
    assert.deepEqual(s.dialerEnd.written, [])
  })

  it('passes a binary chunk from the sender on, in any of its binary forms', () => {
    const s = setup()
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', Buffer.from('ab'))
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', new Uint8Array([0x63]))
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', new Uint8Array([0x64]).buffer)
    assert.deepEqual(s.listenerEnd.written, [[`${P}queue.d1.dialer`, 'ab'], [`${P}queue.d1.dialer`, 'c'], [`${P}queue.d1.dialer`, 'd']])
  })

  it('ends a stream whose chunk is not binary', () => {
    const s = setup()
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    clearSent(s.listenerEnd)
    s.calls.length = 0
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', 'text')
    assert.deepEqual(s.calls, [`end d1.dialer ${ERRORS.INVALID_CHUNK}`])
    assert.deepEqual(s.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.INVALID_CHUNK]])
    // the stream is over: later chunks are ignored
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', Buffer.from('late'))
    assert.deepEqual(s.listenerEnd.written, [])
    assert.equal(s.calls.length, 1)
  })

  it('ignores queue and error on a stream already ending, before its receiver accepted', () => {
    const s = setup()
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', 5)
    assert.deepEqual(s.calls, [`end d1.dialer ${ERRORS.INVALID_CHUNK}`])
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', Buffer.from('x'))
    s.parties.dispatch(s.dialer, 'error', 'd1.dialer', true)
    assert.equal(s.calls.length, 1)
    // the end reaches the receiver when it accepts
    clearSent(s.listenerEnd)
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    assert.deepEqual(s.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.INVALID_CHUNK]])
  })

  it('takes an accept from the receiver only, once', () => {
    const s = setup()
    s.parties.dispatch(s.dialer, 'accept', 'd1.dialer', undefined)
    s.parties.dispatch(s.listener, 'accept', 'd1.listener', undefined)
    assert.deepEqual(s.calls, [])
    assert.equal(s.dialer.sending.get('d1.dialer')?.accepted, false)
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    assert.deepEqual(s.calls, ['accept d1.dialer'])
    s.parties.dispatch(s.dialer, 'accept', 'd1.listener', undefined)
    assert.deepEqual(s.calls, ['accept d1.dialer', 'accept d1.listener'])
    assert.equal(s.dial.state, 'established')
  })

  it('takes an error (the stream\'s end) from the sender only', () => {
    const s = setup()
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    s.parties.dispatch(s.dialer, 'accept', 'd1.listener', undefined)
    s.calls.length = 0
    s.parties.dispatch(s.listener, 'error', 'd1.dialer', true)
    assert.deepEqual(s.calls, [])
    clearSent(s.dialerEnd, s.listenerEnd)
    s.parties.dispatch(s.dialer, 'error', 'd1.dialer', { not: 'a string' })
    assert.deepEqual(s.calls, [`end d1.dialer ${ERRORS.STREAM_ERROR}`])
    assert.deepEqual(s.listenerEnd.sent, [['emit', `${P}error.d1.dialer`, ERRORS.STREAM_ERROR]])
    s.parties.dispatch(s.listener, 'error', 'd1.listener', true)
    assert.deepEqual(s.dialerEnd.sent, [['emit', `${P}error.d1.listener`, true]])
    assert.equal(s.dial.state, 'ended')
  })

  it('ignores an unknown event type', () => {
    const s = setup()
    s.parties.dispatch(s.dialer, 'bogus', 'd1.dialer', Buffer.from('x'))
    s.parties.dispatch(s.listener, 'ACCEPT', 'd1.dialer', undefined)
    assert.deepEqual(s.calls, [])
  })

  it('keeps a party with dials or in use, and lets an idle one go', () => {
    const s = setup()
    s.parties.releaseIfIdle(s.dialer)
    assert.equal(s.parties.get('dialer'), s.dialer)
    assert.equal(s.dialerEnd.closes, 0)
    s.dial.end(true)
    s.used.add(s.listener)
    s.parties.releaseIfIdle(s.listener)
    assert.equal(s.parties.get('listener'), s.listener)
    assert.equal(s.listenerEnd.closes, 0)
    s.parties.releaseIfIdle(s.dialer)
    assert.equal(s.parties.get('dialer'), undefined)
    assert.equal(s.dialerEnd.closes, 1)
    assert.equal(s.parties.size, 1)
    s.used.delete(s.listener)
    s.parties.releaseIfIdle(s.listener)
    assert.equal(s.parties.size, 0)
    assert.equal(s.listenerEnd.closes, 1)
  })

  it('counts the bytes relayed on both sides, held ones once delivered, and tells whom it lets go of once', () => {
    const s = setup()
    s.parties.dispatch(s.dialer, 'queue', 'd1.dialer', Buffer.alloc(3))
    assert.equal(s.dialer.relayed, 0, 'held until the listener accepts')
    s.parties.dispatch(s.listener, 'accept', 'd1.dialer', undefined)
    s.parties.dispatch(s.dialer, 'accept', 'd1.listener', undefined)
    s.parties.dispatch(s.listener, 'queue', 'd1.listener', Buffer.alloc(5))
    assert.deepEqual([s.dialer.relayed, s.listener.relayed], [8, 3 + 5])
    s.parties.remove(s.listener)
    s.parties.remove(s.listener)
    assert.deepEqual(s.removed, ['listener 8'])
  })

  it('removes a party whatever it takes part in, closing its endpoint once', () => {
    const s = setup()
    s.parties.remove(s.listener)
    assert.equal(s.listenerEnd.closes, 1)
    assert.equal(s.parties.get('listener'), undefined)
    s.parties.remove(s.listener)
    assert.equal(s.listenerEnd.closes, 1)
    // a new party under the same key is not removed through the old one
    const freshEnd = new FakeEndpoint('listener-2')
    const fresh = s.parties.open('listener', () => freshEnd)
    s.parties.remove(s.listener)
    assert.equal(s.parties.get('listener'), fresh)
    assert.equal(freshEnd.closes, 0)
  })

  it('calls the drained callback with the party whose endpoint drained', () => {
    const drained: Party[] = []
    const parties = new Parties({ queue: () => undefined, end: () => undefined, accept: () => undefined }, (p) => drained.push(p), () => false, () => undefined)
    let signal: () => void = () => undefined
    const p = parties.open('k', (d) => { signal = d; return new FakeEndpoint('k') })
    signal()
    signal()
    assert.deepEqual(drained, [p, p])
    assert.equal(p.valve.endpoint, p.endpoint)
  })
})
