/**
 * src/relay/backpressure.ts on its own, over fake endpoints that record
 * every pause and resume and whose backlog a test sets: a `Valve` counts the
 * reasons to hold an endpoint, `Backpressure` holds senders above the
 * high-water mark and lets them go at the low-water mark.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Backpressure, Valve, type Endpoint, type Hold, type Receiver } from '../src/relay/backpressure.js'
import type { Chunk, StreamEventName } from '../src/protocol.js'

class FakeEndpoint implements Endpoint {
  backlog = 0
  isPaused = false
  readonly calls: string[] = []

  constructor (readonly id: string) {}

  emit (event: StreamEventName, ...args: Array<true | string>): void {
    this.calls.push(`emit ${event} ${args.join(',')}`)
  }

  write (event: StreamEventName, chunk: Chunk): void {
    this.calls.push(`write ${event} ${chunk.length}`)
  }

  pause (): void {
    this.calls.push('pause')
    this.isPaused = true
  }

  resume (): void {
    this.calls.push('resume')
    this.isPaused = false
  }

  close (): void {
    this.calls.push('close')
  }

  count (call: string): number {
    return this.calls.filter((c) => c === call).length
  }
}

class FakeReceiver implements Receiver<FakeHold> {
  readonly waiting = new Set<FakeHold>()
  constructor (readonly endpoint: FakeEndpoint) {}
}

class FakeSender {
  readonly valve: Valve
  constructor (readonly endpoint: FakeEndpoint) {
    this.valve = new Valve(endpoint)
  }
}

class FakeHold implements Hold {
  holding = false
  queued = 0
  releasable = true
  constructor (readonly sender: FakeSender, readonly receiver: FakeReceiver) {}
}

const MARKS = { relayHighWaterBytes: 1000, relayLowWaterBytes: 100 }

function setup (): { bp: Backpressure, sender: FakeSender, receiver: FakeReceiver, hold: FakeHold } {
  const sender = new FakeSender(new FakeEndpoint('sender'))
  const receiver = new FakeReceiver(new FakeEndpoint('receiver'))
  return { bp: new Backpressure(MARKS), sender, receiver, hold: new FakeHold(sender, receiver) }
}

describe('Valve', () => {
  it('pauses at the first hold only', () => {
    const endpoint = new FakeEndpoint('e')
    const valve = new Valve(endpoint)
    assert.equal(valve.endpoint, endpoint)
    assert.equal(valve.hold(), true)
    assert.deepEqual(endpoint.calls, ['pause'])
    assert.equal(valve.hold(), false)
    assert.equal(valve.hold(), false)
    assert.deepEqual(endpoint.calls, ['pause'])
    assert.equal(endpoint.isPaused, true)
  })

  it('resumes after the last release only, counting every reason', () => {
    const endpoint = new FakeEndpoint('e')
    const valve = new Valve(endpoint)
    valve.hold()
    valve.hold()
    valve.hold()
    assert.equal(valve.release(), false)
    assert.equal(valve.release(), false)
    assert.deepEqual(endpoint.calls, ['pause'])
    assert.equal(endpoint.isPaused, true)
    assert.equal(valve.release(), true)
    assert.deepEqual(endpoint.calls, ['pause', 'resume'])
    assert.equal(endpoint.isPaused, false)
  })

  it('pauses again after a full release', () => {
    const endpoint = new FakeEndpoint('e')
    const valve = new Valve(endpoint)
    valve.hold()
    valve.release()
    assert.equal(valve.hold(), true)
    assert.equal(valve.release(), true)
    assert.deepEqual(endpoint.calls, ['pause', 'resume', 'pause', 'resume'])
  })

  it('interleaves holds and releases', () => {
    const endpoint = new FakeEndpoint('e')
    const valve = new Valve(endpoint)
    assert.equal(valve.hold(), true) // 1
    assert.equal(valve.hold(), false) // 2
    assert.equal(valve.release(), false) // 1
    assert.equal(valve.hold(), false) // 2
    assert.equal(valve.release(), false) // 1
    assert.equal(endpoint.isPaused, true)
    assert.equal(valve.release(), true) // 0
    assert.deepEqual(endpoint.calls, ['pause', 'resume'])
  })
})

describe('Backpressure: marks', () => {
  it('is over strictly above the high-water mark, drained at or below the low-water mark', () => {
    const bp = new Backpressure(MARKS)
    assert.equal(bp.isOver(1000), false)
    assert.equal(bp.isOver(1001), true)
    assert.equal(bp.isOver(0), false)
    assert.equal(bp.isDrained(100), true)
    assert.equal(bp.isDrained(0), true)
    assert.equal(bp.isDrained(101), false)
  })
})

describe('Backpressure: check', () => {
  it('does not hold a sender at or below the high-water mark', () => {
    const { bp, sender, receiver, hold } = setup()
    for (const queued of [0, 500, 1000]) {
      hold.queued = queued
      assert.equal(bp.check(hold), false)
    }
    assert.equal(hold.holding, false)
    assert.equal(receiver.waiting.size, 0)
    assert.deepEqual(sender.endpoint.calls, [])
  })

  it('holds a sender above the high-water mark and adds it to the receiver\'s waiting set', () => {
    const { bp, sender, receiver, hold } = setup()
    hold.queued = 1001
    assert.equal(bp.check(hold), true)
    assert.equal(hold.holding, true)
    assert.deepEqual([...receiver.waiting], [hold])
    assert.deepEqual(sender.endpoint.calls, ['pause'])
    assert.deepEqual(receiver.endpoint.calls, [])
  })

  it('holds once per hold, however many times it is checked', () => {
    const { bp, sender, receiver, hold } = setup()
    hold.queued = 5000
    assert.equal(bp.check(hold), true)
    hold.queued = 9000
    assert.equal(bp.check(hold), false)
    assert.equal(bp.check(hold), false)
    assert.deepEqual(sender.endpoint.calls, ['pause'])
    assert.equal(receiver.waiting.size, 1)
    // one release is enough: the valve counted it once
    assert.equal(bp.release(hold), true)
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
  })

  it('counts two holds of one sender on two receivers: the sender resumes after both let go', () => {
    const { bp, sender, receiver } = setup()
    const other = new FakeReceiver(new FakeEndpoint('other'))
    const a = new FakeHold(sender, receiver)
    const b = new FakeHold(sender, other)
    a.queued = 2000
    b.queued = 2000
    assert.equal(bp.check(a), true)
    assert.equal(bp.check(b), false) // already paused: not paused now
    assert.equal(b.holding, true)
    assert.deepEqual([...other.waiting], [b])
    assert.equal(bp.release(a), false)
    assert.equal(sender.endpoint.isPaused, true)
    assert.equal(bp.release(b), true)
    assert.equal(sender.endpoint.isPaused, false)
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
  })
})

describe('Backpressure: release', () => {
  it('does nothing for a hold not holding', () => {
    const { bp, sender, receiver, hold } = setup()
    assert.equal(bp.release(hold), false)
    assert.deepEqual(sender.endpoint.calls, [])
    assert.equal(receiver.waiting.size, 0)
  })

  it('lets the sender go and takes the hold off the waiting set', () => {
    const { bp, sender, receiver, hold } = setup()
    hold.queued = 2000
    bp.check(hold)
    assert.equal(bp.release(hold), true)
    assert.equal(hold.holding, false)
    assert.equal(receiver.waiting.size, 0)
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
    // twice is harmless
    assert.equal(bp.release(hold), false)
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
  })

  it('releases whatever the queue is now (the caller decides when)', () => {
    const { bp, sender, hold } = setup()
    hold.queued = 2000
    bp.check(hold)
    hold.queued = 5000
    assert.equal(bp.release(hold), true)
    assert.equal(sender.endpoint.isPaused, false)
  })
})

describe('Backpressure: drained', () => {
  it('does nothing while the receiver\'s backlog is above the low-water mark', () => {
    const { bp, sender, receiver, hold } = setup()
    hold.queued = 2000
    bp.check(hold)
    const resumed: FakeHold[] = []
    for (const backlog of [5000, 1000, 101]) {
      receiver.endpoint.backlog = backlog
      bp.drained(receiver, (h) => resumed.push(h))
    }
    assert.deepEqual(resumed, [])
    assert.equal(hold.holding, true)
    assert.deepEqual(sender.endpoint.calls, ['pause'])
  })

  it('releases at the low-water mark and calls back for the hold that resumed its sender', () => {
    const { bp, sender, receiver, hold } = setup()
    hold.queued = 2000
    bp.check(hold)
    receiver.endpoint.backlog = 100
    const resumed: FakeHold[] = []
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [hold])
    assert.equal(hold.holding, false)
    assert.equal(receiver.waiting.size, 0)
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
    // nothing waits any more
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [hold])
  })

  it('keeps holds that are not releasable (a stream waiting for its accept)', () => {
    const { bp, sender, receiver } = setup()
    const other = new FakeSender(new FakeEndpoint('sender-2'))
    const ready = new FakeHold(sender, receiver)
    const notAccepted = new FakeHold(other, receiver)
    notAccepted.releasable = false
    ready.queued = 2000
    notAccepted.queued = 2000
    bp.check(ready)
    bp.check(notAccepted)
    receiver.endpoint.backlog = 0
    const resumed: FakeHold[] = []
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [ready])
    assert.equal(notAccepted.holding, true)
    assert.deepEqual([...receiver.waiting], [notAccepted])
    assert.deepEqual(other.endpoint.calls, ['pause'])
    // once it may go, the next drain lets it go
    notAccepted.releasable = true
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [ready, notAccepted])
    assert.deepEqual(other.endpoint.calls, ['pause', 'resume'])
  })

  it('releases every releasable hold but calls back only for those whose sender resumed', () => {
    const { bp, sender, receiver } = setup()
    const elsewhere = new FakeReceiver(new FakeEndpoint('elsewhere'))
    const second = new FakeSender(new FakeEndpoint('sender-2'))
    // `sender` is also held on another receiver's account
    const a = new FakeHold(sender, receiver)
    const aElsewhere = new FakeHold(sender, elsewhere)
    const b = new FakeHold(second, receiver)
    for (const h of [a, aElsewhere, b]) {
      h.queued = 2000
      bp.check(h)
    }
    receiver.endpoint.backlog = 50
    const resumed: FakeHold[] = []
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [b])
    assert.equal(a.holding, false)
    assert.equal(b.holding, false)
    assert.equal(receiver.waiting.size, 0)
    assert.equal(sender.endpoint.isPaused, true)
    assert.equal(second.endpoint.isPaused, false)
    // the other receiver drains: now `sender` resumes
    elsewhere.endpoint.backlog = 0
    bp.drained(elsewhere, (h) => resumed.push(h))
    assert.deepEqual(resumed, [b, aElsewhere])
    assert.deepEqual(sender.endpoint.calls, ['pause', 'resume'])
  })

  it('reads the receiver\'s backlog, not the holds\' queues', () => {
    const { bp, receiver, hold } = setup()
    hold.queued = 2000
    bp.check(hold)
    receiver.endpoint.backlog = 0
    hold.queued = 999999
    const resumed: FakeHold[] = []
    bp.drained(receiver, (h) => resumed.push(h))
    assert.deepEqual(resumed, [hold])
  })
})
