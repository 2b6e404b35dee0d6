/**
 * src/registry.ts on its own, with plain objects for connections: who holds
 * which address, takeovers, releases by the holder only, and the counts the
 * server reports. No sockets.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { STARS, starOf } from '../src/protocol.js'
import { Registry, type Connection } from '../src/registry.js'

const a: Connection = { id: 'conn-a' }
const b: Connection = { id: 'conn-b' }
const c: Connection = { id: 'conn-c' }

/** What a connection holds, as a sorted list (undefined when it holds nothing). */
function held (registry: Registry<Connection>, connection: Connection): string[] | undefined {
  const addresses = registry.addressesOf(connection.id)
  return addresses === undefined ? undefined : [...addresses].sort()
}

describe('Registry', () => {
  it('starts empty', () => {
    const registry = new Registry<Connection>()
    assert.equal(registry.size, 0)
    assert.equal(registry.connections, 0)
    assert.equal(registry.holderOf('/x'), undefined)
    assert.equal(registry.holds(a, '/x'), false)
    assert.equal(registry.addressesOf(a.id), undefined)
    assert.deepEqual([...registry.entries()], [])
  })

  it('claim gives a free address to a connection: it holds it, and no one lost it', () => {
    const registry = new Registry<Connection>()
    assert.equal(registry.claim('/x', a), undefined)
    assert.equal(registry.holderOf('/x'), a)
    assert.equal(registry.holds(a, '/x'), true)
    assert.equal(registry.holds(b, '/x'), false)
    assert.deepEqual(held(registry, a), ['/x'])
    assert.equal(registry.size, 1)
    assert.equal(registry.connections, 1)
    assert.deepEqual([...registry.entries()], [['/x', a]])
  })

  it('a connection may hold several addresses; each address has one holder', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.claim('/y', a)
    registry.claim('/z', b)
    assert.equal(registry.size, 3)
    assert.equal(registry.connections, 2)
    assert.deepEqual(held(registry, a), ['/x', '/y'])
    assert.deepEqual(held(registry, b), ['/z'])
    assert.deepEqual(new Map(registry.entries()), new Map([['/x', a], ['/y', a], ['/z', b]]))
  })

  it('claiming an address the connection already holds changes nothing and reports no loser', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    assert.equal(registry.claim('/x', a), undefined)
    assert.equal(registry.holderOf('/x'), a)
    assert.equal(registry.size, 1)
    assert.equal(registry.connections, 1)
    assert.deepEqual(held(registry, a), ['/x'])
  })

  it('a takeover returns the previous holder, which loses that address and keeps its others', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.claim('/y', a)
    assert.equal(registry.claim('/x', b), a)
    assert.equal(registry.holderOf('/x'), b)
    assert.equal(registry.holds(a, '/x'), false)
    assert.deepEqual(held(registry, a), ['/y'])
    assert.deepEqual(held(registry, b), ['/x'])
    assert.equal(registry.size, 2)
    assert.equal(registry.connections, 2)
    // its last address taken, a connection no longer counts
    assert.equal(registry.claim('/y', c), a)
    assert.equal(registry.addressesOf(a.id), undefined)
    assert.equal(registry.connections, 2)
    assert.equal(registry.size, 2)
  })

  it('release takes an address only from its holder', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.claim('/y', a)
    assert.equal(registry.release('/x', b), false, 'not the holder')
    assert.equal(registry.holderOf('/x'), a)
    assert.equal(registry.release('/nobody', a), false, 'an address nobody holds')
    assert.equal(registry.size, 2)

    assert.equal(registry.release('/x', a), true)
    assert.equal(registry.holderOf('/x'), undefined)
    assert.deepEqual(held(registry, a), ['/y'])
    assert.equal(registry.size, 1)
    assert.equal(registry.release('/x', a), false, 'already released')

    assert.equal(registry.release('/y', a), true)
    assert.equal(registry.addressesOf(a.id), undefined, 'a connection that holds nothing is forgotten')
    assert.equal(registry.connections, 0)
    assert.equal(registry.size, 0)
  })

  it('the holder that lost an address in a takeover cannot release it from the new holder', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.claim('/x', b)
    assert.equal(registry.release('/x', a), false)
    assert.equal(registry.holderOf('/x'), b)
    assert.deepEqual(held(registry, b), ['/x'])
  })

  it('releaseAll takes every address of a connection, returns them, and leaves the others alone', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.claim('/y', a)
    registry.claim('/z', b)
    registry.claim('/w', a)
    registry.claim('/w', b) // taken over: no longer a's
    assert.deepEqual(registry.releaseAll(a.id).sort(), ['/x', '/y'])
    assert.equal(registry.holderOf('/x'), undefined)
    assert.equal(registry.holderOf('/y'), undefined)
    assert.equal(registry.holderOf('/w'), b)
    assert.equal(registry.addressesOf(a.id), undefined)
    assert.deepEqual(held(registry, b), ['/w', '/z'])
    assert.equal(registry.size, 2)
    assert.equal(registry.connections, 1)
    assert.deepEqual(registry.releaseAll(a.id), [], 'nothing left to release')
    assert.deepEqual(registry.releaseAll('never-joined'), [])
    assert.equal(registry.size, 2)
  })

  it('an address released is free: the next claim takes it with no loser', () => {
    const registry = new Registry<Connection>()
    registry.claim('/x', a)
    registry.releaseAll(a.id)
    assert.equal(registry.claim('/x', b), undefined)
    assert.equal(registry.holderOf('/x'), b)
  })

  it('agrees with a plain map of address to holder over any sequence of claims and releases', () => {
    const connections = [a, b, c]
    // two of each transport: the counts by transport follow too
    const addresses = ['/p', '/q', '/ws/p2p-webrtc-star/p2p/r', '/ws/p2p-webrtc-star/p2p/s']
    const operation = fc.oneof(
      fc.record({ op: fc.constant('claim' as const), address: fc.constantFrom(...addresses), who: fc.constantFrom(...connections) }),
      fc.record({ op: fc.constant('release' as const), address: fc.constantFrom(...addresses), who: fc.constantFrom(...connections) }),
      fc.record({ op: fc.constant('releaseAll' as const), who: fc.constantFrom(...connections) })
    )
    fc.assert(fc.property(fc.array(operation, { maxLength: 60 }), (operations) => {
      const registry = new Registry<Connection>()
      const model = new Map<string, Connection>()
      for (const step of operations) {
        if (step.op === 'claim') {
          const before = model.get(step.address)
          assert.equal(registry.claim(step.address, step.who), before === step.who ? undefined : before, `claim ${step.address} by ${step.who.id}`)
          model.set(step.address, step.who)
        } else if (step.op === 'release') {
          const holds = model.get(step.address) === step.who
          assert.equal(registry.release(step.address, step.who), holds, `release ${step.address} by ${step.who.id}`)
          if (holds) model.delete(step.address)
        } else {
          const expected = [...model].filter(([, who]) => who === step.who).map(([address]) => address)
          assert.deepEqual(registry.releaseAll(step.who.id).sort(), expected.sort(), `releaseAll of ${step.who.id}`)
          for (const address of expected) model.delete(address)
        }
        assert.equal(registry.size, model.size)
        for (const star of STARS) assert.equal(registry.sizeOf(star), [...model.keys()].filter((address) => starOf(address) === star).length, `addresses of ${star}`)
        assert.equal(registry.connections, new Set(model.values()).size)
        assert.deepEqual(new Map(registry.entries()), model)
        for (const address of addresses) {
          assert.equal(registry.holderOf(address), model.get(address))
          for (const who of connections) assert.equal(registry.holds(who, address), model.get(address) === who)
        }
        for (const who of connections) {
          const mine = [...model].filter(([, holder]) => holder === who).map(([address]) => address).sort()
          assert.deepEqual(held(registry, who), mine.length === 0 ? undefined : mine, `addresses of ${who.id}`)
        }
      }
    }), { seed: 20_240_606, numRuns: 300 })
  })
})
