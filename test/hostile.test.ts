/**
 * Hostile peers (issue 6, items 1, 2 and 8): a property-based fuzz of every
 * client event against the real CLI while two honest peers relay through it,
 * a fuzz of the crypto challenge, stream and address hijacking attempts, and
 * event handlers that fail.
 *
 * The fuzz runs with a fixed seed, printed as `# fuzz seed: N`; `FUZZ_SEED=N`
 * runs another, `FUZZ_RUNS=N` changes the number of runs of the main property.
 * On failure fast-check prints the seed, the path and the counterexample as
 * generated: a failing run may wait out acknowledgement timeouts, so shrinking
 * is left to `FUZZ_SHRINK=1`.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { format, inspect } from 'node:util'
import { after, before, describe, it } from 'node:test'
import debug from 'debug'
import fc from 'fast-check'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { ERRORS } from '../src/index.js'
import type { Joins } from '../src/join.js'
import { resolveConfig } from '../src/options.js'
import type { JoinRequest, PeerSocket } from '../src/protocol.js'
import { Parts } from '../src/parts.js'
import type { Registry } from '../src/registry.js'
import type { Relay } from '../src/relay/index.js'
import { connect, type Client, type ClientVersion, type Transport } from './helpers/clients.js'
import { health } from './helpers/http.js'
import { joinWithChallenge, joinedPeer, type Peer } from './helpers/join.js'
import { addressOf, libp2pIdentity, randomAddress, randomPeerId, type Identity } from './helpers/keys.js'
import { sample, scrape } from './helpers/metrics.js'
import { startCli, startServer, type CliServer } from './helpers/server.js'
import { STREAM, Source, accepted, makeChunks, relay, relayIsEmpty, send, sha256, type Received, type Relayed } from './helpers/streams.js'
import { eventually, until, within } from './helpers/wait.js'

const require = createRequire(import.meta.url)
const KiB = 1024
const MiB = 1024 * KiB

const SEED = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) : 20_240_606
if (!Number.isSafeInteger(SEED)) throw new Error(`FUZZ_SEED must be an integer, not ${String(process.env.FUZZ_SEED)}`)
/** Runs of each property; tuned so that the whole file stays well under 90 s. */
const RUNS = { events: Number(process.env.FUZZ_RUNS ?? 150), packets: 60, challenge: 150 }
/** Stop at the first counterexample unless shrinking is asked for. */
const SHRINK = process.env.FUZZ_SHRINK !== undefined && process.env.FUZZ_SHRINK !== '' && process.env.FUZZ_SHRINK !== '0'
const fuzzParameters = (numRuns: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: !SHRINK })
/**
 * The fuzzed CLI's dial timeout: short, since an attacker that dials itself may
 * never answer, yet long enough for the honest listener to answer on a loaded machine.
 */
const FUZZ_DIAL_TIMEOUT_MS = 2500
/** How long an acknowledgement may take: a dial's answer may wait out the dial timeout. */
const ACK_BOUND_MS = FUZZ_DIAL_TIMEOUT_MS + 5000
/** Hostile strings of one run together stay below this; each may be up to 100 KiB. */
/** How long the honest peers' count on /health may take to settle after a run. */
const HEALTH_PATIENCE_MS = 10_000

const HUGE_BUDGET_BYTES = 320 * KiB
const KNOWN_ERRORS = new Set<string>(Object.values(ERRORS))
const WARNING = /warning.*not authenticated/i

// ---------------------------------------------------------------------------
// What the fuzzer sends. Values are generated as plain descriptions (so that a
// counterexample prints readably) and made into real arguments at run time.

type Value =
  | { kind: 'json', value: unknown }
  | { kind: 'undefined' }
  | { kind: 'huge', char: string, size: number }
  | { kind: 'deep', shape: 'array' | 'object', depth: number, leaf: 'string' | 'binary' | 'null' | 'number' }
  | { kind: 'binary', bytes: number[] }
  /** One of this run's own websocket-star addresses (never an honest peer's). */
  | { kind: 'own-address', index: number, form: number }
  /** One of this run's own webrtc-star addresses. */
  | { kind: 'own-star-address', index: number }
  /** An honest peer's address: dialing from it or leaving it must do nothing; c and d are the honest webrtc-star peers. */
  | { kind: 'honest-address', peer: 'a' | 'b' | 'c' | 'd' }
  /** An `ss-handshake` offer made of other values; absent fields left out. */
  | { kind: 'offer', intentId: Value, src: Value, dst: Value, signal: Value | 'sdp', answer: Value | undefined }
  | { kind: 'odd-address', value: string }
  | { kind: 'own-dial-id', index: number }
  | { kind: 'honest-dial-id', round: 'current' | 'previous' }

type StreamName =
  | { kind: 'honest', direction: 'forward' | 'back', round: 'current' | 'previous' }
  | { kind: 'own', index: number, direction: 'dialer' | 'listener' }
  | { kind: 'text', value: string }
  | { kind: 'huge', size: number }

type EventName =
  | { kind: 'ss-join' } | { kind: 'ss-leave' } | { kind: 'ss-dial' } | { kind: 'ss-handshake' }
  | { kind: 'stream', type: string, name: StreamName }
  | { kind: 'unknown', name: string | number }

/** Where a function goes among the arguments: last is an acknowledgement, elsewhere it is sent as null. */
type AckPlacement = 'none' | 'last' | 'middle' | 'both'

interface Command {
  event: EventName
  args: Value[]
  ack: AckPlacement
  /** Wait for this command's answer before sending the next one. */
  wait: boolean
}

/** What the attacker answers when it is dialled (it may dial itself): a value, or nothing at all. */
type Answer = { kind: 'silent' } | { kind: 'answer', value: Value }

interface Attack {
  version: ClientVersion
  transport: Transport
  /** 4.x only: connect on `/socket.io-next`, where only webrtc-star peers join. */
  next: boolean
  /** Peer ids (32 digest bytes) of the attacker's own addresses. */
  ids: number[][]
  answer: Answer
  commands: Command[]
}

const FIXED_ID = 'QmPs1GdAEN7xRsSvW1qQ5hA263WURYmwyV3VGAwjiAPqCq'
/** Addresses a parser may choke on; none of them is an honest peer's. */
const ODD_ADDRESSES = [
  '', '/', '//', 'garbage', 'ipfs/', 'p2p/', '/ipfs/', '/p2p/', '/ipfs', ' /ip4/1.2.3.4/tcp/1',
  '/ip4/999.0.0.1/tcp/1', '/ip4/1.2.3.4/tcp/99999', '/ip4/0/tcp/0/ws/p2p-websocket-star/', '//ip4//1.2.3.4',
  '/ip4/127.0.0.1/tcp/9090/ws',
  '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star',
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star/ipfs/${FIXED_ID}`,
  `/ipfs/${FIXED_ID}/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star`,
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${FIXED_ID}/ipfs/${FIXED_ID}`,
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${FIXED_ID}/`,
  '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/notbase58!0OIl',
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${FIXED_ID}\u0000`,
  '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA',
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA`,
  `/dns4/ipfs/tcp/1/ws/p2p-websocket-star/p2p/${FIXED_ID}`,
  '/dns4/p2p/tcp/1/ws/p2p-websocket-star/ipfs/',
  `/dns4/💩.la/tcp/1/ws/p2p-websocket-star/ipfs/${FIXED_ID}`,
  '/dns4/\u202e\u0000\ud800/tcp/1/ws/p2p-websocket-star',
  `/unix/ipfs%2F${FIXED_ID}`,
  `/p2p-circuit/ipfs/${FIXED_ID}`,
  '/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/uEiA',
  '/ip6zone/x/ip6/::1/tcp/1/ws/p2p-websocket-star',
  '/ip6/::ffff:1.2.3.4/tcp/1/ws/p2p-websocket-star',
  `/dns4/${'a'.repeat(1100)}/tcp/1/ws/p2p-websocket-star`,
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${'Q'.repeat(900)}`
]
const ADDRESS_SEGMENTS = ['ip4', 'ip6', 'dns4', '127.0.0.1', '::1', 'tcp', 'udp', '9090', '0', 'ws', 'wss', 'p2p-websocket-star',
  'ipfs', 'p2p', 'ipfs/', 'p2p/', FIXED_ID, '', '..', '%2F', '💩', '\u0000']

/** Event names both clients send over the wire (2.x emits its own reserved names locally, 4.x throws on them). */
const RESERVED_EVENTS = new Set(['connect', 'connect_error', 'connect_timeout', 'connecting', 'disconnect', 'disconnecting',
  'error', 'reconnect', 'reconnect_attempt', 'reconnect_failed', 'reconnect_error', 'reconnecting', 'ping', 'pong',
  'newListener', 'removeListener'])

const scalar = fc.oneof(
  fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }), fc.constantFrom('', '0', 'true', 'null', '__proto__', 'constructor')
).map((value): Value => ({ kind: 'json', value }))

const hostileValue: fc.Arbitrary<Value> = fc.oneof(
  { arbitrary: scalar, weight: 4 },
  { arbitrary: fc.constant<Value>({ kind: 'undefined' }), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value): Value => ({ kind: 'json', value })), weight: 2 },
  {
    arbitrary: fc.record({ char: fc.constantFrom('x', '/', 'é', '💩', '\u0000', 'f'), size: fc.integer({ min: 1 * KiB, max: 100 * KiB }) })
      .map(({ char, size }): Value => ({ kind: 'huge', char, size })),
    weight: 1
  },
  {
    arbitrary: fc.record({
      shape: fc.constantFrom('array' as const, 'object' as const),
      depth: fc.integer({ min: 50, max: 400 }),
      leaf: fc.constantFrom('string' as const, 'binary' as const, 'null' as const, 'number' as const)
    }).map((deep): Value => ({ kind: 'deep', ...deep })),
    weight: 1
  },
  { arbitrary: fc.array(fc.nat(255), { maxLength: 48 }).map((bytes): Value => ({ kind: 'binary', bytes })), weight: 2 }
)

const ownAddress = fc.record({ index: fc.nat(2), form: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.nat(4), weight: 1 }) }).map(({ index, form }): Value => ({ kind: 'own-address', index, form }))
const oddAddress = fc.oneof(
  fc.constantFrom(...ODD_ADDRESSES),
  fc.array(fc.oneof(fc.constantFrom(...ADDRESS_SEGMENTS), fc.string({ maxLength: 6 })), { maxLength: 9 }).map((segments) => `/${segments.join('/')}`),
  fc.string({ unit: 'binary', maxLength: 40 })
).map((value): Value => ({ kind: 'odd-address', value }))
const honestAddress = fc.constantFrom('a' as const, 'b' as const, 'c' as const, 'd' as const).map((peer): Value => ({ kind: 'honest-address', peer }))
const ownStarAddress = fc.nat(2).map((index): Value => ({ kind: 'own-star-address', index }))
/** An address to join: honest peers' addresses excluded (without the challenge anyone may take those over, by design). */
const joinAddress = fc.oneof({ arbitrary: ownAddress, weight: 4 }, { arbitrary: ownStarAddress, weight: 2 }, { arbitrary: oddAddress, weight: 2 }, { arbitrary: hostileValue, weight: 1 })
const anyAddress = fc.oneof({ arbitrary: ownAddress, weight: 4 }, { arbitrary: ownStarAddress, weight: 2 }, { arbitrary: honestAddress, weight: 2 }, { arbitrary: oddAddress, weight: 1 }, { arbitrary: hostileValue, weight: 1 })
/** An offer shaped like the clients' own, with any of its parts hostile or left out. */
const offerValue: fc.Arbitrary<Value> = fc.record({
  intentId: fc.oneof({ arbitrary: fc.uuid().map((value): Value => ({ kind: 'json', value })), weight: 4 }, { arbitrary: hostileValue, weight: 1 }),
  // mostly its own webrtc-star address (joined first in most runs), so that the offer gets past the first checks
  src: fc.oneof({ arbitrary: fc.constant<Value>({ kind: 'own-star-address', index: 0 }), weight: 3 }, { arbitrary: anyAddress, weight: 2 }),
  dst: fc.oneof(
    { arbitrary: ownStarAddress, weight: 2 },
    { arbitrary: fc.constantFrom<Value>({ kind: 'honest-address', peer: 'c' }, { kind: 'honest-address', peer: 'd' }), weight: 2 },
    { arbitrary: anyAddress, weight: 2 }
  ),
  signal: fc.oneof({ arbitrary: fc.constant('sdp' as const), weight: 4 }, { arbitrary: hostileValue, weight: 2 }),
  answer: fc.option(fc.oneof(fc.constant<Value>({ kind: 'json', value: true }), hostileValue), { nil: undefined })
}).map((offer): Value => ({ kind: 'offer', ...offer }))
const dialId = fc.oneof(
  { arbitrary: fc.nat(3).map((index): Value => ({ kind: 'own-dial-id', index })), weight: 5 },
  { arbitrary: fc.constantFrom('current' as const, 'previous' as const).map((round): Value => ({ kind: 'honest-dial-id', round })), weight: 2 },
  { arbitrary: hostileValue, weight: 1 }
)
const joinData = fc.oneof(
  { arbitrary: fc.constant<Value>({ kind: 'json', value: '' }), weight: 6 },
  { arbitrary: hostileValue, weight: 2 },
  { arbitrary: fc.array(fc.nat(255), { maxLength: 64 }).map((b): Value => ({ kind: 'json', value: Buffer.from(b).toString('hex') })), weight: 1 }
)
const streamName: fc.Arbitrary<StreamName> = fc.oneof(
  fc.record({ direction: fc.constantFrom('forward' as const, 'back' as const), round: fc.constantFrom('current' as const, 'previous' as const) })
    .map((n): StreamName => ({ kind: 'honest', ...n })),
  fc.record({ index: fc.nat(3), direction: fc.constantFrom('dialer' as const, 'listener' as const) }).map((n): StreamName => ({ kind: 'own', ...n })),
  fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('', '.', '..dialer', 'x.dialer', 'undefined.listener', '__proto__', 'constructor'))
    .map((value): StreamName => ({ kind: 'text', value })),
  fc.integer({ min: 1 * KiB, max: 100 * KiB }).map((size): StreamName => ({ kind: 'huge', size }))
)
const chunk = fc.oneof(
  { arbitrary: fc.array(fc.nat(255), { maxLength: 2048 }).map((bytes): Value => ({ kind: 'binary', bytes })), weight: 3 },
  { arbitrary: fc.constantFrom<Value>({ kind: 'json', value: true }, { kind: 'json', value: 'an error' }), weight: 1 },
  { arbitrary: hostileValue, weight: 2 }
)
const eventName: fc.Arbitrary<EventName> = fc.oneof(
  { arbitrary: fc.constant<EventName>({ kind: 'ss-join' }), weight: 4 },
  { arbitrary: fc.constant<EventName>({ kind: 'ss-leave' }), weight: 1 },
  { arbitrary: fc.constant<EventName>({ kind: 'ss-dial' }), weight: 4 },
  { arbitrary: fc.constant<EventName>({ kind: 'ss-handshake' }), weight: 3 },
  {
    arbitrary: fc.record({ type: fc.oneof(fc.constantFrom('accept', 'queue', 'error'), fc.string({ maxLength: 6 })), name: streamName })
      .map(({ type, name }): EventName => ({ kind: 'stream', type, name })),
    weight: 5
  },
  {
    arbitrary: fc.oneof(
      fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.integer(),
      fc.constantFrom('ws-peer', 'ss-incomming', 'ws-handshake', '__proto__', 'constructor', 'hasOwnProperty', 'toString', 'socket.io-pull-stream',
        'socket.io-pull-stream.', 'socket.io-pull-stream.queue', 'socket.io-pull-stream..x', 'SS-JOIN', 'ss-join ')
    ).filter((name) => typeof name === 'number' || !RESERVED_EVENTS.has(name)).map((name): EventName => ({ kind: 'unknown', name })),
    weight: 2
  }
)
/** Arguments shaped like the event's own, or anything at all. */
function argumentsFor (event: EventName): fc.Arbitrary<Value[]> {
  const anything = fc.array(hostileValue, { maxLength: 5 })
  const shaped = ((): fc.Arbitrary<Value[]> => {
    switch (event.kind) {
      case 'ss-join': return fc.tuple(joinAddress, joinData)
      // webrtc-star's older clients leave without an address
      case 'ss-leave': return fc.oneof(fc.tuple(anyAddress), fc.constant<Value[]>([]))
      case 'ss-handshake': return fc.tuple(offerValue)
      case 'ss-dial': return fc.tuple(anyAddress, anyAddress, dialId)
      case 'stream': return fc.array(chunk, { minLength: 1, maxLength: 2 })
      case 'unknown': return anything
    }
  })()
  return fc.oneof({ arbitrary: shaped, weight: 5 }, { arbitrary: anything, weight: 1 })
}
const command: fc.Arbitrary<Command> = eventName.chain((event) => fc.record({
  event: fc.constant(event),
  args: argumentsFor(event),
  ack: fc.oneof(
    { arbitrary: fc.constant<AckPlacement>('last'), weight: 5 },
    { arbitrary: fc.constantFrom<AckPlacement>('none', 'middle', 'both'), weight: 3 }
  ),
  wait: fc.oneof({ arbitrary: fc.constant(false), weight: 4 }, { arbitrary: fc.constant(true), weight: 1 })
}))
const attack: fc.Arbitrary<Attack> = fc.record({
  version: fc.constantFrom<ClientVersion>('v2', 'v4'),
  transport: fc.oneof({ arbitrary: fc.constant<Transport>('websocket'), weight: 3 }, { arbitrary: fc.constant<Transport>('polling'), weight: 1 }),
  next: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
  ids: fc.array(fc.array(fc.nat(255), { minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 6 }),
  answer: fc.oneof(
    { arbitrary: fc.constant<Answer>({ kind: 'silent' }), weight: 1 },
    { arbitrary: fc.constantFrom<Value>({ kind: 'undefined' }, { kind: 'json', value: null }).map((value): Answer => ({ kind: 'answer', value })), weight: 4 },
    { arbitrary: hostileValue.map((value): Answer => ({ kind: 'answer', value })), weight: 4 }
  ),
  // most runs first join their own addresses, so that their dials and streams get past the first checks
  joinFirst: fc.oneof({ arbitrary: fc.constant(true), weight: 2 }, { arbitrary: fc.constant(false), weight: 1 }),
  commands: fc.array(command, { minLength: 1, maxLength: 25 })
}).map(({ joinFirst, ...rest }): Attack => joinFirst
  ? {
      ...rest,
      commands: [0, 1, 2].map((index): Command => ({ event: { kind: 'ss-join' }, args: [{ kind: 'own-address', index, form: 0 }, { kind: 'json', value: '' }], ack: 'last', wait: false }))
        .concat([{ event: { kind: 'ss-join' }, args: [{ kind: 'own-star-address', index: 0 }], ack: 'last', wait: false }], rest.commands)
    }
  : rest)

// ---------------------------------------------------------------------------
// Making descriptions into arguments.

/** The part of peer-id (untyped, see test/types.d.ts) used here. */
interface PeerIdModule {
  createFromBytes: (bytes: Buffer) => { toB58String: () => string }
}

/** A base58 peer id (sha2-256 multihash) made of the given digest bytes. */
function peerIdOf (digest: number[]): string {
  const PeerId = require('peer-id') as PeerIdModule
  return PeerId.createFromBytes(Buffer.from([0x12, 0x20, ...digest])).toB58String()
}

function ownAddressOf (id: string, form: number): string {
  switch (form) {
    case 0: return `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${id}`
    case 1: return `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${id}`
    case 2: return `/dns4/💩.example/tcp/443/wss/p2p-websocket-star/ipfs/${id}`
    case 3: return `/ip6/::1/tcp/1/ws/p2p-websocket-star/ipfs/${id}`
    default: return `/dns4/ipfs/tcp/1/ws/p2p-websocket-star/ipfs/${id}`
  }
}

function ownStarAddressOf (id: string): string {
  return `/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star/p2p/${id}`
}

/** What the honest peers are relaying now: the attacker may guess their names. */
interface HonestState {
  a: string
  b: string
  /** The honest webrtc-star peers' addresses: c signals d. */
  c: string
  d: string
  /** Dial ids the honest listener answers; it refuses every other dial at once. */
  expected: Set<string>
  current: Relayed | undefined
  previous: Relayed | undefined
}

class Materializer {
  private budget = HUGE_BUDGET_BYTES
  constructor (private readonly ids: string[], private readonly dialIds: string[], private readonly honest: HonestState) {}

  private huge (char: string, size: number): string {
    const bytes = Buffer.byteLength(char) * size
    if (bytes > this.budget) return char
    this.budget -= bytes
    return char.repeat(size)
  }

  value (v: Value): unknown {
    switch (v.kind) {
      case 'json': return v.value
      case 'undefined': return undefined
      case 'huge': return this.huge(v.char, v.size)
      case 'binary': return Buffer.from(v.bytes)
      case 'deep': {
        let value: unknown = v.leaf === 'string' ? 'leaf' : v.leaf === 'binary' ? Buffer.from([1, 2, 3]) : v.leaf === 'null' ? null : 42
        for (let i = 0; i < v.depth; i++) value = v.shape === 'array' ? [value] : { k: value }
        return value
      }
      case 'own-address': return ownAddressOf(this.ids[v.index % this.ids.length], v.form)
      case 'own-star-address': return ownStarAddressOf(this.ids[v.index % this.ids.length])
      case 'honest-address': return this.honest[v.peer]
      case 'offer': {
        const offer: Record<string, unknown> = {
          intentId: this.value(v.intentId),
          srcMultiaddr: this.value(v.src),
          dstMultiaddr: this.value(v.dst),
          signal: v.signal === 'sdp' ? { type: 'offer', sdp: 'v=0\r\n' } : this.value(v.signal)
        }
        if (v.answer !== undefined) offer.answer = this.value(v.answer)
        for (const key of Object.keys(offer)) if (offer[key] === undefined) Reflect.deleteProperty(offer, key)
        return offer
      }
      case 'odd-address': return v.value
      case 'own-dial-id': return this.dialIds[v.index % this.dialIds.length]
      case 'honest-dial-id': return this.honest[v.round]?.dialId ?? 'no-honest-dial-yet'
    }
  }

  streamName (n: StreamName): string {
    switch (n.kind) {
      case 'honest': {
        const r = this.honest[n.round]
        return r === undefined ? 'no-honest-dial-yet.dialer' : n.direction === 'forward' ? r.forward : r.back
      }
      case 'own': return `${this.dialIds[n.index % this.dialIds.length]}.${n.direction}`
      case 'text': return n.value
      case 'huge': return this.huge('s', n.size)
    }
  }

  event (e: EventName): string | number {
    switch (e.kind) {
      case 'stream': return `${STREAM}${e.type}.${this.streamName(e.name)}`
      case 'unknown': return e.name
      default: return e.kind
    }
  }
}

/** How the fuzzed events were answered, by event and answer: shows how deep the fuzz reached. */
const tally = new Map<string, number>()

/** An answer must be a success of the event's shape, or one plain string. */
function checkAnswer (event: string, answer: unknown[], refusals: Set<string>): void {
  const outcome = `${event} ${typeof answer[0] === 'string' && KNOWN_ERRORS.has(answer[0]) ? answer[0] : answer[0] === null || answer[0] === undefined ? 'ok' : 'refused by the listener'}`
  tally.set(outcome, (tally.get(outcome) ?? 0) + 1)
  const shown = JSON.stringify(answer, (_k, v: unknown) => typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…` : v)
  const [err] = answer
  if (err !== null && err !== undefined) {
    assert.equal(typeof err, 'string', `${event} answered a non-string error: ${shown}`)
    assert.equal(answer.length, 1, `${event} answered an error with more: ${shown}`)
    const known = KNOWN_ERRORS.has(err as string) || (event === 'ss-dial' && refusals.has(err as string))
    assert.ok(known, `${event} answered an unknown error: ${shown}`)
    return
  }
  if (event === 'ss-join') {
    // without the challenge: (null, null, the other peers)
    assert.equal(answer.length, 3, `ss-join success of the wrong shape: ${shown}`)
    assert.equal(answer[1], null, `ss-join success of the wrong shape: ${shown}`)
    assert.ok(Array.isArray(answer[2]) && answer[2].every((a) => typeof a === 'string'), `ss-join success of the wrong shape: ${shown}`)
  } else if (event === 'ss-dial') {
    // the old server answered a dial with no arguments at all
    assert.deepEqual(answer.filter((x) => x !== undefined && x !== null), [], `ss-dial success of the wrong shape: ${shown}`)
  } else {
    assert.fail(`${event} was answered although it has no acknowledgement: ${shown}`)
  }
}

// ---------------------------------------------------------------------------
// The server under attack.

/** The CLI is running, answers /health and has printed nothing on stderr but `allowed` lines. */
async function assertHealthy (cli: CliServer, allowed: RegExp[]): Promise<void> {
  assert.equal(cli.proc.exitCode, null, `the server exited: ${JSON.stringify(cli.output())}`)
  assert.equal(cli.proc.signalCode, null, `the server was killed: ${JSON.stringify(cli.output())}`)
  assert.equal((await health(cli.uri)).status, 200)
  const { stderr } = cli.output()
  const failed = stderr.split('\n').filter((line) => line.includes('handler failed'))
  assert.deepEqual(failed, [], `a handler threw: our validation let something through\n${stderr.slice(-3000)}`)
  const unexpected = stderr.split('\n').filter((line) => line !== '' && !allowed.some((ok) => ok.test(line)))
  assert.deepEqual(unexpected, [], 'the server printed errors')
}

/** fast-check keeps the property's own error as the cause, which the test runner does not show. */
function reportCause (err: unknown): void {
  const cause = err instanceof Error ? err.cause : undefined
  if (cause !== undefined) process.stdout.write(`# the property failed with: ${inspect(cause).split('\n').join('\n# ')}\n`)
}

/** Reports the input that was running if `cli` exits before `expected()` says it may. */
function reportDeath (cli: CliServer, expected: () => boolean, running: () => string): void {
  void cli.exited.then((exit) => {
    if (expected()) return
    process.stdout.write(`# the server exited (${String(exit.code ?? exit.signal)}) during ${running()}\n# stderr: ${exit.stderr.slice(-4000)}\n`)
  })
}

/**
 * Relays 4 MiB each way in 16 KiB chunks between `a` (dialer) and `b`, round
 * after round until `stop()`: every round must arrive byte-exact. A round
 * starts once `due()` says so, so that the traffic overlaps the attacks
 * without starving them of CPU (the peers share this process).
 */
async function honestTraffic (a: Peer, b: Peer, state: HonestState, due: () => boolean, stop: () => boolean, running: () => string): Promise<number> {
  const all = [...makeChunks(512, 16 * KiB)]
  const forward = all.slice(0, 256)
  const back = all.slice(256)
  const expected = (chunks: Buffer[]): Received => ({ bytes: 4 * MiB, chunks: 256, sha256: sha256(chunks), end: true })
  // the attacker's dials to an honest peer are refused at once, so that its acks come quickly
  b.client.socket.on('ss-incomming', (id: string, from: string, answer: (err?: string) => void) => {
    if (!state.expected.has(id) || from !== a.address) answer('honest peer busy')
  })
  a.client.socket.on('ss-incomming', (_id: string, _from: string, answer: (err?: string) => void) => { answer('honest peer busy') })
  let rounds = 0
  while (!stop()) {
    await until(() => due() || stop(), 'the next honest round is due', 60_000)
    if (stop()) break
    const dialId = randomUUID()
    state.expected.add(dialId)
    const r = await relay(a.client, a.address, b.client, b.address, dialId)
    // once a stream has ended, stop listening to its name, as socket.io-pull-stream does: the
    // attacker may reuse an old dial id, and the helper's Source cannot take a second end
    void r.atListener.done.then(() => { b.client.socket.off(`${STREAM}error.${r.forward}`) })
    void r.atDialer.done.then(() => { a.client.socket.off(`${STREAM}error.${r.back}`) })
    state.current = r
    await within(r.dialerMaySend, 'the honest forward stream is accepted')
    send(a.client, r.forward, forward)
    await within(r.listenerMaySend, 'the honest back stream is accepted')
    send(b.client, r.back, back)
    const startedDuring = running()
    const finished = async (source: Source, direction: string): Promise<Received> => {
      try {
        return await within(source.done, `honest round ${rounds}, ${direction}`, 30_000)
      } catch (err) {
        const connected = `a ${a.client.socket.connected ? 'connected' : 'disconnected'}, b ${b.client.socket.connected ? 'connected' : 'disconnected'}`
        throw new Error(`${(err as Error).message}: ${source.received} bytes arrived; ${connected}; the round began during ${startedDuring}`)
      }
    }
    assert.deepEqual(await finished(r.atListener, 'a → b'), expected(forward), `round ${rounds}, a → b, began during ${startedDuring}`)
    assert.deepEqual(await finished(r.atDialer, 'b → a'), expected(back), `round ${rounds}, b → a, began during ${startedDuring}`)
    state.previous = r
    rounds++
  }
  return rounds
}

/** Whether `value` can be called: what a server sent as an acknowledgement, say. */
function isCallback (value: unknown): value is (...args: unknown[]) => unknown {
  return typeof value === 'function'
}

/** One run of the attack: a new connection sends the commands; every acknowledgement is checked. */
async function runAttack (url: string, honest: HonestState, input: Attack): Promise<void> {
  const ids = input.ids.map(peerIdOf)
  const dialIds = [0, 1, 2, 3].map(() => randomUUID())
  const m = new Materializer(ids, dialIds, honest)
  const refusals = new Set(['honest peer busy'])
  const next = input.next && input.version === 'v4'
  const client = await connect(url, input.version, input.transport, next ? { path: '/socket.io-next/' } : {})
  let closedBy: string | undefined
  client.socket.on('disconnect', (reason: string) => { closedBy = reason })
  // the attacker may dial itself: it answers as the run says
  const answer = input.answer.kind === 'answer' ? m.value(input.answer.value) : undefined
  if (typeof answer === 'string' && answer !== '') refusals.add(answer.slice(0, 1024))
  client.socket.on('ss-incomming', (_id: unknown, _from: unknown, ack: unknown) => {
    if (input.answer.kind === 'answer' && isCallback(ack)) ack(answer)
  })
  const pending: Array<Promise<void>> = []
  /** What went wrong inside callbacks: thrown there, it would land in the client library instead of here. */
  const problems: string[] = []
  // its own offers, to itself, or sent back refused: only an offer's own fields, and a known error
  client.socket.on('ws-handshake', (...received: unknown[]) => {
    const problem = offerProblem(received)
    if (problem !== undefined) problems.push(`ws-handshake to the attacker: ${problem}`)
    const err = (received[0] as Record<string, unknown> | undefined)?.err
    const outcome = `ws-handshake ${typeof err === 'string' ? err : 'delivered'}`
    tally.set(outcome, (tally.get(outcome) ?? 0) + 1)
  })
  try {
    for (const cmd of input.commands) {
      const event = m.event(cmd.event)
      const args = cmd.args.map((v) => m.value(v))
      const label = typeof event === 'string' ? event.slice(0, 80) : String(event)
      let onAnswer: (answer: unknown[]) => void = () => {}
      const fn = (): ((...answer: unknown[]) => void) => {
        const f = (...answer: unknown[]): void => {
          if (f === ack) onAnswer(answer)
          else problems.push(`a function that is not the acknowledgement of ${label} was called`)
        }
        return f
      }
      if (cmd.ack === 'middle' || cmd.ack === 'both') args.splice(Math.min(1, args.length), 0, fn())
      if (cmd.ack === 'last' || cmd.ack === 'both') args.push(fn())
      // Socket.IO takes a function for an acknowledgement only in the last place; elsewhere it is sent as null
      const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined
      const answered = new Promise<void>((resolve) => {
        onAnswer = (answer) => {
          try {
            checkAnswer(label, answer, refusals)
          } catch (err) {
            problems.push(err instanceof Error ? err.message : String(err))
          }
          resolve()
        }
      })
      client.socket.emit(event as string, ...args)
      // only ss-join and ss-dial are answered; an answer to anything else is a problem, see checkAnswer
      if (ack !== undefined && (event === 'ss-join' || event === 'ss-dial')) {
        const bounded = within(answered, `the answer to ${label} ${JSON.stringify(cmd.args).slice(0, 300)}`, ACK_BOUND_MS)
        // handled below, by Promise.all: not an unhandled rejection while later commands are sent
        bounded.catch(() => {})
        pending.push(bounded)
        if (cmd.wait) await bounded
      }
    }
    await Promise.all(pending)
    // a round trip: everything sent before has been handled
    assert.deepEqual(await client.request('ss-dial'), [ERRORS.INVALID_REQUEST])
    assert.equal(closedBy, undefined, `the server closed the attacker's connection: ${String(closedBy)}`)
    assert.deepEqual(problems, [])
  } finally {
    await client.close()
  }
}

const OFFER_FIELDS = new Set(['intentId', 'srcMultiaddr', 'dstMultiaddr', 'signal', 'answer', 'err'])

/** What is wrong with the arguments of a `ws-handshake` the server sent, if anything. */
function offerProblem (args: unknown[]): string | undefined {
  const shown = JSON.stringify(args).slice(0, 300)
  const [offer] = args
  if (args.length !== 1 || typeof offer !== 'object' || offer === null) return `not one offer: ${shown}`
  const fields = offer as Record<string, unknown>
  const extra = Object.keys(fields).filter((key) => !OFFER_FIELDS.has(key))
  if (extra.length > 0) return `fields that are not an offer's: ${extra.join(', ')} in ${shown}`
  if (typeof fields.intentId !== 'string' || typeof fields.srcMultiaddr !== 'string' || typeof fields.dstMultiaddr !== 'string') return `an offer without its ids: ${shown}`
  if (typeof fields.signal !== 'object' || fields.signal === null || Array.isArray(fields.signal)) return `a signal that is not an object: ${shown}`
  if (fields.err !== undefined && !(typeof fields.err === 'string' && KNOWN_ERRORS.has(fields.err))) return `an unknown error: ${shown}`
  return undefined
}

/** What the honest webrtc-star peers signalled: c's offers to d, by intent id, and everything d received. */
interface HonestSignals {
  sent: Map<string, Record<string, unknown>>
  received: unknown[][]
}

/** The honest c sends d one offer, and returns its intent id. */
function honestSignal (c: Client, state: HonestState, signals: HonestSignals): string {
  const offer = { intentId: randomUUID(), srcMultiaddr: state.c, dstMultiaddr: state.d, signal: { type: 'offer', sdp: `v=0\r\no=- ${signals.sent.size} 2 IN IP4 127.0.0.1\r\n` } }
  signals.sent.set(offer.intentId, offer)
  c.emit('ss-handshake', offer)
  return offer.intentId
}

/** Every offer d received is well-formed, each in c's name is one c sent and arrived intact, and none of c's is missing. */
function checkHonestSignals (state: HonestState, signals: HonestSignals): void {
  const problems = signals.received.map(offerProblem).filter((problem) => problem !== undefined)
  assert.deepEqual(problems, [], 'd received only well-formed offers')
  const fromC = signals.received.map(([offer]) => offer as Record<string, unknown>).filter((offer) => offer.srcMultiaddr === state.c)
  for (const offer of fromC) assert.deepEqual(offer, signals.sent.get(offer.intentId as string), 'an offer in c\'s name is one c sent, intact')
  assert.equal(new Set(fromC.map((offer) => offer.intentId)).size, signals.sent.size, 'every offer of c arrived, once')
  assert.equal(fromC.length, signals.sent.size, 'every offer of c arrived, once')
}

/** A Socket.IO packet as socket.io-client 2.x's manager sends it, bypassing every check of the client. */
interface RawPacket { type: number, nsp: string, id: number | undefined, data: unknown }

const rawPacket: fc.Arbitrary<RawPacket> = fc.record({
  type: fc.oneof({ arbitrary: fc.constant(2), weight: 3 }, { arbitrary: fc.integer({ min: -1, max: 8 }), weight: 2 }),
  nsp: fc.oneof({ arbitrary: fc.constant('/'), weight: 3 }, { arbitrary: fc.constantFrom('/admin', '//x:99999/', '/%zz?a=%', '/?__proto__[x]=1'), weight: 1 }),
  id: fc.option(fc.oneof(fc.nat(), fc.constant(-1), fc.constant(2 ** 53)), { nil: undefined }),
  data: fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.tuple(fc.constantFrom('disconnect', 'connect', 'newListener', 'error', 'ss-join', 'ss-dial', `${STREAM}queue.x`, 42, null, {}, []), fc.jsonValue({ maxDepth: 2 }))
      .map(([event, arg]) => [event, arg]),
    fc.constantFrom(['ss-join', { _placeholder: true, num: 0 }], ['ss-dial', { _placeholder: true, num: 9 }, 'x', 'y'], [{ _placeholder: true, num: -1 }])
  )
})

describe('hostile payloads', () => {
  // set by before(); still undefined in after() where it failed
  let openCli: CliServer | undefined
  let url: string
  let peerA: Peer | undefined
  let peerB: Peer | undefined
  // the honest webrtc-star peers: c on /socket.io with 2.x, d on /socket.io-next with 4.x
  let peerC: Client | undefined
  let peerD: Client | undefined
  const signals: HonestSignals = { sent: new Map(), received: [] }
  /** The CLI and the two honest peers, for the tests (which run only once before() has started them). */
  const ready = (): { open: CliServer, a: Peer, b: Peer } => {
    assert.ok(openCli !== undefined && peerA !== undefined && peerB !== undefined, 'the CLI and the honest peers started')
    return { open: openCli, a: peerA, b: peerB }
  }
  let stopping = false
  let running = 'start-up'
  const honest: HonestState = { a: '', b: '', c: '', d: '', expected: new Set(), current: undefined, previous: undefined }

  before(async () => {
    process.stdout.write(`# fuzz seed: ${SEED}\n`)
    openCli = await startCli(['--disableCryptoChallenge', `--dialTimeoutMS=${FUZZ_DIAL_TIMEOUT_MS}`])
    reportDeath(openCli, () => stopping, () => running)
    url = `http://127.0.0.1:${openCli.port}`
    peerA = await joinedPeer(url)
    peerB = await joinedPeer(url)
    honest.a = peerA.address
    honest.b = peerB.address
    peerC = await connect(url, 'v2')
    peerD = await connect(url, 'v4', 'websocket', { path: '/socket.io-next/' })
    for (const [peer, key] of [[peerC, 'c'], [peerD, 'd']] as const) {
      honest[key] = ownStarAddressOf(randomPeerId())
      assert.deepEqual((await peer.request('ss-join', honest[key]))[0], null, `honest webrtc-star peer ${key} joins`)
    }
    peerD.socket.on('ws-handshake', (...offer: unknown[]) => { signals.received.push(offer) })
  })
  after(async () => {
    await peerA?.client.close()
    await peerB?.client.close()
    await peerC?.close()
    await peerD?.close()
    stopping = true
    const exit = await openCli?.stop()
    assert.equal(exit?.code, 0)
  })

  it('survives every client event with hostile arguments from 2.x and 4.x while two honest peers relay every byte intact and two others signal', async () => {
    const { open, a, b } = ready()
    assert.ok(peerC !== undefined && peerD !== undefined, 'the honest webrtc-star peers joined')
    const c = peerC
    let run = 0
    let fuzzing = true
    const started = Date.now()
    // a new round with every new attack
    let lastRound = 0
    const due = (): boolean => {
      if (run === lastRound) return false
      lastRound = run
      return true
    }
    const traffic = honestTraffic(a, b, honest, due, () => !fuzzing, () => running)
    // awaited below, once the fuzz is over
    traffic.catch(() => {})
    try {
      await fc.assert(fc.asyncProperty(attack, async (input) => {
        running = `fuzz run ${++run}: ${fc.stringify(input)}`
        honestSignal(c, honest, signals)
        await runAttack(url, honest, input)
        await assertHealthy(open, [WARNING])
      }), fuzzParameters(RUNS.events))
    } catch (err) {
      reportCause(err)
      throw err
    } finally {
      fuzzing = false
    }
    const fuzzMs = Date.now() - started
    const rounds = await traffic
    process.stdout.write(`# fuzz: ${run} runs in ${(fuzzMs / 1000).toFixed(1)} s; meanwhile the honest peers relayed ${rounds} rounds of 4 MiB each way intact\n`)
    process.stdout.write(`# answers: ${[...tally].sort().map(([outcome, n]) => `${outcome}: ${n}`).join(', ')}\n`)
    const figures = await scrape(url)
    const dials = sample(figures, 'rendezvous_dials_total_success') - rounds - 1
    process.stdout.write(`# the attackers' own dials that the server relayed: ${dials}; relayed bytes in all: ${sample(figures, 'rendezvous_relayed_bytes_total')}\n`)
    assert.ok(rounds >= 2, `only ${rounds} honest rounds completed while fuzzing`)
    // a last offer of c, then all of c's offers are at d, intact, and nothing forged in c's name
    const last = honestSignal(c, honest, signals)
    await until(() => signals.received.some(([offer]) => (offer as Record<string, unknown> | undefined)?.intentId === last), 'the honest last offer arrives')
    checkHonestSignals(honest, signals)
    process.stdout.write(`# the honest webrtc-star peers: ${signals.sent.size} offers intact; d received ${signals.received.length} in all\n`)
    // the four honest peers still hold their addresses, and nothing an attacker joined is left
    await eventually(async () => (await health(open.uri)).body.peers, (peers) => peers === 4, 'only the four honest peers are joined', { patienceMs: HEALTH_PATIENCE_MS })
    const checker = await connect(url, 'v4')
    try {
      const [err, , others] = await checker.request('ss-join', randomAddress(), '')
      assert.equal(err, null)
      assert.deepEqual([...(others as string[])].sort(), [a.address, b.address].sort())
    } finally {
      await checker.close()
    }
    assert.doesNotMatch((await scrape(url)).text, /^rendezvous_handler_errors_total\{[^}]*\} [1-9]/m)
    await assertHealthy(open, [WARNING])
  })

  it('closes only the connection that sends a malformed Socket.IO packet', async () => {
    const { open, a, b } = ready()
    let run = 0
    const outcomes = new Map<string, number>()
    try {
      await fc.assert(fc.asyncProperty(rawPacket, async (packet) => {
        running = `packet run ${++run}: ${fc.stringify(packet)}`
        const client = await connect(url, 'v2')
        try {
          const closed = new Promise<string>((resolve) => { client.socket.on('disconnect', (reason: string) => { resolve(`closed: ${reason}`) }) })
          ;(client.socket as unknown as { io: { packet: (p: RawPacket) => void } }).io.packet(packet)
          // the connection is either closed or still answers
          const probe = new Promise<string>((resolve) => { client.socket.emit('ss-dial', (err: unknown) => { resolve(`answered ${String(err)}`) }) })
          const outcome = await within(Promise.race([closed, probe]), `the outcome of ${fc.stringify(packet)}`, ACK_BOUND_MS)
          assert.ok(outcome.startsWith('closed') || outcome === `answered ${ERRORS.INVALID_REQUEST}`, outcome)
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
        } finally {
          await client.close()
        }
        await assertHealthy(open, [WARNING])
      }), fuzzParameters(RUNS.packets))
    } catch (err) {
      reportCause(err)
      throw err
    }
    process.stdout.write(`# malformed packets: ${[...outcomes].sort().map(([outcome, n]) => `${outcome}: ${n}`).join(', ')}\n`)
    // the honest peers never noticed
    const dialId = randomUUID()
    honest.expected.add(dialId)
    const r = await relay(a.client, a.address, b.client, b.address, dialId)
    const chunks = [...makeChunks(16, 1000)]
    await r.dialerMaySend
    send(a.client, r.forward, chunks)
    send(b.client, r.back, [])
    assert.equal((await within(r.atListener.done, 'a relay after the malformed packets')).sha256, sha256(chunks))
    await r.atDialer.done
    await eventually(async () => (await health(open.uri)).body.peers, (peers) => peers === 4, 'only the four honest peers are joined', { patienceMs: HEALTH_PATIENCE_MS })
  })
})

// ---------------------------------------------------------------------------
// The crypto challenge under attack.

/**
 * The attacker holds the private keys of identities 0–2; of the victim (3) it
 * has the public key and the (nonce, signature) of the victim's own join.
 */
const VICTIM = 3

type JoinData =
  /** The public key of the address's own identity (identity 0's for other addresses). */
  | { kind: 'address-key', cut: number }
  | { kind: 'public-key', who: number, cut: number }
  /** A signature by `who`, or by the address's identity when the attacker has its key (identity 0's otherwise). */
  | { kind: 'signature', who: number | 'address', of: 'nonce' | 'other', cut: number, flip: number }
  | { kind: 'victim-signature' }
  | { kind: 'victim-nonce' }
  | { kind: 'hex', bytes: number[] }
  | { kind: 'value', value: Value }

/** One join as the client makes it, a key then a signature, with either step hostile; `second: null` stops after the first. */
interface JoinAttempt {
  /** An identity's address (3 is the victim's), in its ipfs/ or p2p/ form; the address of a random key, that nobody can sign for; or anything. */
  address: { kind: 'identity', who: number, p2p: boolean } | { kind: 'random-key', type: 'Ed25519' | 'secp256k1', bytes: number[] } | { kind: 'value', value: Value }
  first: JoinData
  second: JoinData | null
  /** Whether each step carries an acknowledgement. */
  acks: [boolean, boolean]
}

interface ChallengeAttack {
  version: ClientVersion
  attempts: JoinAttempt[]
}

const cut = fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: fc.nat(140), weight: 1 })
const otherJoinData: fc.Arbitrary<JoinData> = fc.oneof(
  fc.record({ who: fc.nat(3), cut }).map((d): JoinData => ({ kind: 'public-key', ...d })),
  fc.constantFrom<JoinData>({ kind: 'victim-signature' }, { kind: 'victim-nonce' }),
  fc.array(fc.nat(255), { maxLength: 600 }).map((bytes): JoinData => ({ kind: 'hex', bytes })),
  fc.oneof(hostileValue, fc.constantFrom<Value>({ kind: 'json', value: '' }, { kind: 'json', value: 'abc' }, { kind: 'json', value: 'zz' }))
    .map((value): JoinData => ({ kind: 'value', value }))
)
const signature: fc.Arbitrary<JoinData> = fc.record({
  who: fc.oneof({ arbitrary: fc.constant('address' as const), weight: 3 }, { arbitrary: fc.nat(2), weight: 1 }),
  of: fc.oneof({ arbitrary: fc.constant('nonce' as const), weight: 3 }, { arbitrary: fc.constant('other' as const), weight: 1 }),
  cut,
  flip: fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.nat(63), weight: 1 })
}).map((d): JoinData => ({ kind: 'signature', ...d }))
const joinAttempt: fc.Arbitrary<JoinAttempt> = fc.record({
  address: fc.oneof(
    { arbitrary: fc.record({ who: fc.nat(3), p2p: fc.oneof({ arbitrary: fc.constant(false), weight: 4 }, { arbitrary: fc.constant(true), weight: 1 }) }).map(({ who, p2p }) => ({ kind: 'identity' as const, who, p2p })), weight: 8 },
    {
      arbitrary: fc.oneof(
        fc.array(fc.nat(255), { minLength: 32, maxLength: 32 }).map((bytes) => ({ kind: 'random-key' as const, type: 'Ed25519' as const, bytes })),
        fc.tuple(fc.constantFrom(2, 3), fc.array(fc.nat(255), { minLength: 32, maxLength: 32 })).map(([parity, bytes]) => ({ kind: 'random-key' as const, type: 'secp256k1' as const, bytes: [parity, ...bytes] }))
      ),
      weight: 2
    },
    { arbitrary: fc.oneof(oddAddress, hostileValue).map((value) => ({ kind: 'value' as const, value })), weight: 1 }
  ),
  first: fc.oneof({ arbitrary: cut.map((c): JoinData => ({ kind: 'address-key', cut: c })), weight: 6 }, { arbitrary: otherJoinData, weight: 2 }, { arbitrary: signature, weight: 1 }),
  second: fc.oneof(
    { arbitrary: signature, weight: 5 },
    { arbitrary: fc.constant<JoinData>({ kind: 'victim-signature' }), weight: 3 },
    { arbitrary: otherJoinData, weight: 2 },
    { arbitrary: fc.constant(null), weight: 1 }
  ),
  acks: fc.tuple(
    fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, { arbitrary: fc.constant(false), weight: 1 }),
    fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, { arbitrary: fc.constant(false), weight: 1 })
  )
})
const challengeAttack: fc.Arbitrary<ChallengeAttack> = fc.record({
  version: fc.constantFrom<ClientVersion>('v2', 'v4'),
  attempts: fc.array(joinAttempt, { minLength: 1, maxLength: 6 })
})

interface Victim {
  identity: Identity
  address: string
  nonce: string
  signature: string
}

/** Cuts a hex string to `cut` characters (0: whole) and flips the bits of one byte (-1: none). */
function damage (hex: string, cut: number, flip = -1): string {
  let out = cut > 0 ? hex.slice(0, cut) : hex
  if (flip >= 0 && out.length >= 2) {
    const at = (flip % (out.length >> 1)) * 2
    out = `${out.slice(0, at)}${(parseInt(out.slice(at, at + 2), 16) ^ 0xff).toString(16).padStart(2, '0')}${out.slice(at + 2)}`
  }
  return out
}

/**
 * A protobuf public key made of random bytes, and the peer id it hashes to
 * (the fixed id when the bytes are no key at all): an identity whose private
 * key nobody has.
 */
function keyOf (type: 'Ed25519' | 'secp256k1', bytes: number[]): { id: string, publicKeyHex: string } {
  const protobuf = Uint8Array.from([0x08, type === 'Ed25519' ? 1 : 2, 0x12, bytes.length, ...bytes])
  let id = FIXED_ID
  try {
    id = peerIdFromPublicKey(publicKeyFromProtobuf(protobuf)).toString()
  } catch {}
  return { id, publicKeyHex: Buffer.from(protobuf).toString('hex') }
}

/** How the hostile joins were answered: shows how deep the fuzz reached. */
const challengeTally = new Map<string, number>()

async function runChallengeAttack (url: string, identities: Identity[], victim: Victim, input: ChallengeAttack): Promise<void> {
  const m = new Materializer([FIXED_ID], ['x'], { a: '', b: '', c: '', d: '', expected: new Set(), current: undefined, previous: undefined })
  const client = await connect(url, input.version)
  /** The last nonce this connection was given, by address. */
  const nonces = new Map<unknown, string>()
  try {
    for (const attempt of input.attempts) {
      const who = attempt.address.kind === 'identity' ? attempt.address.who : 0
      const randomKey = attempt.address.kind === 'random-key' ? keyOf(attempt.address.type, attempt.address.bytes) : undefined
      const address = attempt.address.kind === 'identity'
        ? addressOf(identities[who].id).replace('/ipfs/', attempt.address.p2p ? '/p2p/' : '/ipfs/')
        : randomKey !== undefined ? addressOf(randomKey.id) : m.value((attempt.address as { value: Value }).value)
      const steps: Array<[JoinData, boolean]> = [[attempt.first, attempt.acks[0]]]
      if (attempt.second !== null) steps.push([attempt.second, attempt.acks[1]])
      for (const [d, acked] of steps) {
        let data: unknown
        switch (d.kind) {
          case 'address-key': data = damage(randomKey?.publicKeyHex ?? identities[who].publicKeyHex, d.cut); break
          case 'public-key': data = damage(identities[d.who].publicKeyHex, d.cut); break
          case 'signature': {
            // the attacker signs with the address's key when it has it, with its own otherwise
            const signer = identities[d.who === 'address' ? (who === VICTIM ? 0 : who) : d.who]
            const signed = d.of === 'nonce' ? nonces.get(address) ?? 'no nonce yet' : 'another nonce'
            data = damage(await signer.sign(Buffer.from(signed)), d.cut, d.flip)
            break
          }
          case 'victim-signature': data = victim.signature; break
          case 'victim-nonce': data = victim.nonce; break
          case 'hex': data = Buffer.from(d.bytes).toString('hex'); break
          case 'value': data = m.value(d.value); break
        }
        if (!acked) {
          client.emit('ss-join', address, data)
          continue
        }
        const answer = await client.request('ss-join', address, data)
        const shown = `${JSON.stringify(answer)} to ss-join ${JSON.stringify(attempt)}`
        const [err, nonce, peers] = answer
        const outcome = err !== null ? (typeof err === 'string' ? err : inspect(err)) : typeof nonce === 'string' ? 'nonce' : 'joined'
        const key = `${address === victim.address ? 'victim\'s address' : randomKey !== undefined ? 'random keys' : 'other addresses'} ${outcome}`
        challengeTally.set(key, (challengeTally.get(key) ?? 0) + 1)
        if (err !== null) {
          assert.equal(typeof err, 'string', `a non-string error: ${shown}`)
          assert.ok(KNOWN_ERRORS.has(err as string), `an unknown error: ${shown}`)
          assert.equal(answer.length, 1, shown)
        } else if (typeof nonce === 'string') {
          assert.equal(answer.length, 2, shown)
          nonces.set(address, nonce)
        } else {
          assert.equal(nonce, null, shown)
          assert.ok(Array.isArray(peers) && peers.every((p) => typeof p === 'string'), shown)
          // the one thing an attacker must never get
          assert.notEqual(address, victim.address, `the attacker took the victim's address: ${shown}`)
        }
      }
    }
  } finally {
    await client.close()
  }
}

describe('hostile joins with the crypto challenge on', () => {
  // set by before(); still undefined in after() where it failed
  let startedCli: CliServer | undefined
  let url: string
  let victimConnection: Client | undefined
  /** The CLI and the victim's connection, for the tests (which run only once before() has started them). */
  const ready = (): { cli: CliServer, victimClient: Client } => {
    assert.ok(startedCli !== undefined && victimConnection !== undefined, 'the CLI and the victim started')
    return { cli: startedCli, victimClient: victimConnection }
  }
  let victim: Victim
  let identities: Identity[]
  let stopping = false
  let running = 'start-up'

  before(async () => {
    startedCli = await startCli()
    reportDeath(startedCli, () => stopping, () => running)
    url = `http://127.0.0.1:${startedCli.port}`
    identities = [await libp2pIdentity('Ed25519'), await libp2pIdentity('secp256k1'), await libp2pIdentity('RSA'), await libp2pIdentity('Ed25519')]
    const identity = identities[VICTIM]
    const address = addressOf(identity.id)
    victimConnection = await connect(url, 'v2')
    const { answer, nonce, signature } = await joinWithChallenge(victimConnection, address, identity)
    assert.equal(answer[0], null)
    victim = { identity, address, nonce, signature }
  })
  after(async () => {
    await victimConnection?.close()
    stopping = true
    const exit = await startedCli?.stop()
    assert.equal(exit?.code, 0)
  })

  it('answers every hostile ss-join with a nonce, a success or an error string, and never gives the victim\'s address away', async () => {
    const { cli, victimClient } = ready()
    let run = 0
    const started = Date.now()
    try {
      await fc.assert(fc.asyncProperty(challengeAttack, async (input) => {
        running = `challenge run ${++run}: ${fc.stringify(input)}`
        await runChallengeAttack(url, identities, victim, input)
        // the challenge is on: nothing at all on stderr
        await assertHealthy(cli, [])
      }), fuzzParameters(RUNS.challenge))
    } catch (err) {
      reportCause(err)
      throw err
    }
    process.stdout.write(`# challenge fuzz: ${run} runs in ${((Date.now() - started) / 1000).toFixed(1)} s; answers: ${[...challengeTally].sort().map(([outcome, n]) => `${outcome}: ${n}`).join(', ')}\n`)
    // the victim still holds its address: dialing from it is authorized
    assert.deepEqual(await victimClient.request('ss-dial', victim.address, randomAddress(), randomUUID()), [ERRORS.PEER_NOT_FOUND])
    await eventually(async () => (await health(cli.uri)).body.peers, (peers) => peers === 1, 'only the victim is joined', { patienceMs: HEALTH_PATIENCE_MS })
  })
})

// ---------------------------------------------------------------------------
// Hijacking.

type Server = Awaited<ReturnType<typeof startServer>>

describe('no hijacking', () => {
  let server: Server
  const clients: Client[] = []
  const peer = async (version: ClientVersion): Promise<Peer> => await joinedPeer(server.url, { version, opened: (client) => { clients.push(client) } })
  before(async () => { server = await startServer({ cryptoChallenge: false }) })
  after(async () => {
    await Promise.all(clients.map(async (c) => { await c.close() }))
    await server.stop()
  })

  for (const version of ['v2', 'v4'] as const) {
    it(`an intruder on ${version} that knows the dial id and stream names cannot accept, read, inject into or end them, nor dial in the victim's name`, async () => {
      const a = await peer('v2')
      const b = await peer('v4')
      const c = await peer(version)
      const holders = server.peers()
      const dialId = randomUUID()
      const forward = `${dialId}.dialer`
      const back = `${dialId}.listener`
      // everything the server might send the intruder about these streams
      const leaked: string[] = []
      for (const type of ['accept', 'queue', 'error']) {
        for (const name of [forward, back]) c.client.socket.on(`${STREAM}${type}.${name}`, () => { leaked.push(`${type}.${name}`) })
      }
      // the listener takes its time to answer and accept
      let answerB: (() => void) | undefined
      let atB: Source | undefined
      b.client.socket.on('ss-incomming', (id: string, from: string, answer: () => void) => {
        if (id !== dialId || from !== a.address) return
        atB = new Source(b.client, forward, false)
        answerB = answer
      })
      const dialerMaySend = accepted(a.client, forward)
      const listenerMaySend = accepted(b.client, back)
      const dialed = a.client.request('ss-dial', a.address, b.address, dialId)
      await dialerMaySend
      await until(() => answerB !== undefined, 'the listener hears of the dial')
      const first = [...makeChunks(8, 1000)]
      send(a.client, forward, first, null)

      // the intruder accepts both streams before the listener does, and tries to inject into and end them
      for (const name of [forward, back]) {
        c.client.emit(`${STREAM}accept.${name}`)
        c.client.emit(`${STREAM}queue.${name}`, Buffer.from('injected'))
        c.client.emit(`${STREAM}error.${name}`, true)
        c.client.emit(`${STREAM}error.${name}`, 'hijacked')
      }
      // it dials in the victims' names, with and without their dial id
      assert.deepEqual(await c.client.request('ss-dial', a.address, b.address, dialId), [ERRORS.NOT_AUTHORIZED])
      assert.deepEqual(await c.client.request('ss-dial', a.address, b.address, randomUUID()), [ERRORS.NOT_AUTHORIZED])
      assert.deepEqual(await c.client.request('ss-dial', b.address, a.address, dialId), [ERRORS.NOT_AUTHORIZED])
      // from its own address, the dial id taken at the listener is refused
      assert.deepEqual(await c.client.request('ss-dial', c.address, b.address, dialId), [ERRORS.DIAL_ID_IN_USE])
      // and it tries to release their addresses
      c.client.emit('ss-leave', a.address)
      c.client.emit('ss-leave', b.address)
      // round trips: the server has handled all the intruder sent, and read the dialer's chunks
      await c.client.request('ss-dial')
      await a.client.request('ss-dial')
      assert.deepEqual(server.peers(), holders)
      assert.ok(atB !== undefined && answerB !== undefined)
      // held for the real listener: nothing delivered yet, to anyone
      assert.equal(atB.received, 0)

      answerB()
      atB.accept()
      assert.deepEqual((await dialed).filter((x) => x != null), [])
      const listener = atB
      await until(() => listener.received === 8000, 'the held chunks reach the listener')
      // once the stream runs, the intruder tries again
      c.client.emit(`${STREAM}queue.${forward}`, Buffer.from('injected'))
      c.client.emit(`${STREAM}error.${forward}`, true)
      await c.client.request('ss-dial')
      const second = [...makeChunks(40, 1000)].slice(8)
      send(a.client, forward, second)
      assert.deepEqual(await within(atB.done, 'the forward stream'), { bytes: 40_000, chunks: 40, sha256: sha256([...first, ...second]), end: true })

      const atA = new Source(a.client, back)
      await listenerMaySend
      const backChunks = [...makeChunks(10, 333)]
      c.client.emit(`${STREAM}error.${back}`, 'hijacked')
      send(b.client, back, backChunks)
      assert.deepEqual(await within(atA.done, 'the back stream'), { bytes: 3330, chunks: 10, sha256: sha256(backChunks), end: true })
      await relayIsEmpty(server)
      // everything the server would have sent the intruder has arrived by now
      await c.client.request('ss-dial')
      assert.deepEqual(leaked, [])
      assert.deepEqual(server.peers(), holders)
    })
  }

  it('a dial id reused against the dialer of a running relay is refused, and the relay goes on untouched', async () => {
    const own = await startServer({ cryptoChallenge: false })
    const joined: Client[] = []
    const join = async (version: ClientVersion): Promise<Peer> => await joinedPeer(own.url, { version, opened: (client) => { joined.push(client) } })
    try {
      const a = await join('v2')
      const b = await join('v2')
      const c = await join('v4')
      const dialId = randomUUID()
      const forward = `${dialId}.dialer`
      const back = `${dialId}.listener`
      let atB: Source | undefined
      b.client.socket.on('ss-incomming', (id: string, _from: string, answer: () => void) => {
        if (id !== dialId) return
        atB = new Source(b.client, forward)
        answer()
      })
      // what a receives on the stream back from b, every chunk and every end, in order
      const events: Array<number | string> = []
      a.client.socket.on(`${STREAM}queue.${back}`, (chunk: Buffer) => { events.push(chunk.length) })
      a.client.socket.on(`${STREAM}error.${back}`, (end: unknown) => { events.push(`end ${String(end)}`) })
      const listenerMaySend = accepted(b.client, back)
      assert.deepEqual((await a.client.request('ss-dial', a.address, b.address, dialId)).filter((x) => x != null), [])
      a.client.emit(`${STREAM}accept.${back}`)
      // the intruder dials the dialer with the same dial id: refused, since a already uses its names
      a.client.socket.on('ss-incomming', (_id: string, from: string, answer: () => void) => { if (from === c.address) answer() })
      assert.deepEqual(await c.client.request('ss-dial', c.address, a.address, dialId), [ERRORS.DIAL_ID_IN_USE])
      await c.client.close()
      assert.equal(own.stats().dials, 1)
      await listenerMaySend
      send(b.client, back, makeChunks(4, 100))
      await until(() => events.filter((e) => typeof e === 'number').length === 4 && events[events.length - 1] === 'end true', 'the back stream arrives')
      assert.deepEqual(events, [100, 100, 100, 100, 'end true'])
      send(a.client, forward, [])
      assert.ok(atB !== undefined)
      await within(atB.done, 'the forward stream')
    } finally {
      await Promise.all(joined.map(async (client) => { await client.close() }))
      await own.stop()
    }
  })

  it('a replayed public key and a signature made for another nonce do not take an address', async () => {
    const guarded = await startServer({ cryptoChallenge: true })
    const victimId = await libp2pIdentity('Ed25519')
    const address = addressOf(victimId.id)
    const victimClient = await connect(guarded.url, 'v2')
    const others: Client[] = []
    try {
      const { answer, nonce: nonce1, signature: captured } = await joinWithChallenge(victimClient, address, victimId)
      assert.deepEqual(answer.slice(0, 2), [null, null])
      const holder = guarded.peers()[address]
      assert.notEqual(holder, undefined)

      for (const version of ['v2', 'v4'] as const) {
        const attacker = await connect(guarded.url, version)
        others.push(attacker)
        // the captured signature is no key
        const [asKey] = await attacker.request('ss-join', address, captured)
        assert.equal(typeof asKey, 'string')
        // the victim's public key gets a challenge of its own, with a new nonce
        const [err2, nonce2] = await attacker.request('ss-join', address, victimId.publicKeyHex)
        assert.equal(err2, null)
        assert.equal(typeof nonce2, 'string')
        assert.notEqual(nonce2, nonce1)
        // which the signature of the victim's nonce does not answer, however often it is sent
        assert.deepEqual(await attacker.request('ss-join', address, captured), [ERRORS.SIGNATURE_INVALID])
        assert.deepEqual(await attacker.request('ss-join', address, captured), [ERRORS.SIGNATURE_INVALID])
        assert.deepEqual(await attacker.request('ss-join', address, damage(captured, 0, 7)), [ERRORS.SIGNATURE_INVALID])
        assert.equal(guarded.peers()[address], holder)
        assert.deepEqual(await attacker.request('ss-dial', address, randomAddress(), randomUUID()), [ERRORS.NOT_AUTHORIZED])
      }
      // the victim still holds it: its dials are authorized, and a third peer is told of it
      assert.deepEqual(await victimClient.request('ss-dial', address, randomAddress(), randomUUID()), [ERRORS.PEER_NOT_FOUND])
      const thirdId = await libp2pIdentity('Ed25519')
      const third = await connect(guarded.url, 'v4')
      others.push(third)
      const [err4, , peers] = (await joinWithChallenge(third, addressOf(thirdId.id), thirdId)).answer
      assert.equal(err4, null)
      assert.deepEqual(peers, [address])
      assert.equal(guarded.peers()[address], holder)
    } finally {
      await Promise.all([victimClient, ...others].map(async (c) => { await c.close() }))
      await guarded.stop()
    }
  })

  it('the CLI warns exactly once, at start, that joins are unauthenticated when the challenge is off, and never when it is on', async () => {
    const off = await startCli(['--disableCryptoChallenge'])
    const on = await startCli()
    try {
      await until(() => WARNING.test(off.output().stderr), 'the warning')
      // joins do not repeat it
      const client = await connect(`http://127.0.0.1:${off.port}`, 'v2')
      assert.equal((await client.request('ss-join', randomAddress(), ''))[0], null)
      await client.close()
      const lines = off.output().stderr.split('\n').filter((line) => line !== '')
      assert.equal(lines.length, 1, JSON.stringify(lines))
      assert.match(lines[0], /^rendezvous: warning: .*crypto challenge is disabled.*joins are not authenticated/)
      assert.equal(on.output().stderr, '')
    } finally {
      assert.equal((await off.stop()).code, 0)
      assert.equal((await on.stop()).code, 0)
    }
  })
})

// ---------------------------------------------------------------------------
// Errors in handlers, on the project's own Socket.IO wiring.

interface Wired {
  url: string
  registry: Registry<PeerSocket>
  /** Server-side connection ids, in the order the clients connected. */
  ids: string[]
  relay: Relay
  stop: () => Promise<void>
}

/** A stand-in for `Joins.join`, given the real one. */
type JoinFn = (real: Joins, socket: PeerSocket, request: JoinRequest) => Promise<void>

/** The parts `start()` builds, from the same factory, with `faulty` standing in for joins.join. */
async function wire (faulty: JoinFn): Promise<Wired> {
  const parts = new Parts(resolveConfig({ port: 0, host: '127.0.0.1', cryptoChallenge: false, metrics: true }), {
    joinHandlers: (real) => ({
      join: (socket, request) => faulty(real, socket, request),
      leave: (socket, address) => { real.leave(socket, address) },
      leaveStar: (socket, star) => { real.leaveStar(socket, star) },
      disconnect: (socket) => { real.disconnect(socket) }
    })
  })
  const ids: string[] = []
  parts.io.on('connection', (socket) => { ids.push(socket.id) })
  await parts.start()
  const { port } = parts.http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    registry: parts.registry,
    ids,
    relay: parts.relay,
    stop: async () => { await parts.stop() }
  }
}

/** Lines the debug module prints while `fn` runs (it writes them to stderr through `debug.log`). */
async function capturingDebug<T> (fn: (lines: string[]) => Promise<T>): Promise<T> {
  const lines: string[] = []
  const original = debug.log
  debug.log = (...args: unknown[]) => { lines.push(format(...args)) }
  try {
    return await fn(lines)
  } finally {
    debug.log = original
  }
}

describe('errors in handlers', () => {
  const BOOM = randomAddress()
  const failures: Record<string, JoinFn> = {
    throws: (real, socket, request) => {
      if (request.address === BOOM) throw new Error('join blew up')
      return real.join(socket, request)
    },
    'returns a rejected promise': async (real, socket, request) => {
      if (request.address === BOOM) {
        await Promise.reject(new Error('join blew up'))
        return
      }
      await real.join(socket, request)
    }
  }
  for (const [kind, faulty] of Object.entries(failures)) {
    it(`a join handler that ${kind} is logged with the connection id, counted and answered, and every connection carries on`, async () => {
      const server = await wire(faulty)
      const clients: Client[] = []
      try {
        await capturingDebug(async (lines) => {
          clients.push(await connect(server.url, 'v2'))
          await until(() => server.ids.length === 1, 'the first connection')
          clients.push(await connect(server.url, 'v4'))
          await until(() => server.ids.length === 2, 'the second connection')
          const [failing, other] = clients as [Client, Client]
          assert.deepEqual(await failing.request('ss-join', BOOM, ''), [ERRORS.INTERNAL])
          const logged = lines.filter((line) => line.includes('handler failed'))
          assert.equal(logged.length, 1, JSON.stringify(lines))
          assert.ok(logged[0].includes(`[${server.ids[0]}] ss-join handler failed`), logged[0])
          assert.ok(logged[0].includes('join blew up'), logged[0])
          const metrics = await scrape(server.url)
          assert.equal(sample(metrics, 'rendezvous_handler_errors_total', { event: 'ss-join' }), 1)

          // the other connection joins and leaves as usual, and so does the one whose handler failed
          const address = randomAddress()
          assert.deepEqual(await other.request('ss-join', address, ''), [null, null, []])
          assert.equal(server.registry.holderOf(address)?.id, server.ids[1])
          const again = randomAddress()
          assert.deepEqual(await failing.request('ss-join', again, ''), [null, null, [address]])
          other.emit('ss-leave', address)
          failing.emit('ss-leave', again)
          await until(() => server.registry.size === 0, 'both addresses are released')
          assert.ok(failing.socket.connected && other.socket.connected)
          assert.equal(sample(await scrape(server.url), 'rendezvous_handler_errors_total', { event: 'ss-join' }), 1)
        })
      } finally {
        await Promise.all(clients.map(async (c) => { await c.close() }))
        await server.stop()
      }
    })
  }

  it('handlers that throw synchronously (ss-dial, a relayed stream event) are logged, counted and, where they can be, answered', async () => {
    const server = await wire(async (real, socket, request) => { await real.join(socket, request) })
    const { relay } = server
    const dial = relay.dial.bind(relay)
    relay.dial = (socket, request) => {
      if (request.dialId === 'boom') throw new Error('dial blew up')
      return dial(socket, request)
    }
    const onStreamEvent = relay.onStreamEvent.bind(relay)
    relay.onStreamEvent = (socket, event, args) => {
      if (event.endsWith('.boom')) throw new Error('stream blew up')
      onStreamEvent(socket, event, args)
    }
    const client = await connect(server.url, 'v4')
    try {
      await capturingDebug(async (lines) => {
        await until(() => server.ids.length === 1, 'the connection')
        const address = randomAddress()
        assert.deepEqual(await client.request('ss-join', address, ''), [null, null, []])
        assert.deepEqual(await client.request('ss-dial', address, randomAddress(), 'boom'), [ERRORS.INTERNAL])
        client.emit(`${STREAM}queue.boom`, Buffer.from('x'))
        // the connection goes on: a dial that does not throw is answered as usual
        assert.deepEqual(await client.request('ss-dial', address, randomAddress(), 'fine'), [ERRORS.PEER_NOT_FOUND])
        const logged = lines.filter((line) => line.includes('handler failed'))
        assert.equal(logged.length, 2, JSON.stringify(lines))
        assert.ok(logged[0].includes(`[${server.ids[0]}] ss-dial handler failed`) && logged[0].includes('dial blew up'), logged[0])
        assert.ok(logged[1].includes(`[${server.ids[0]}] ${STREAM}queue.boom handler failed`) && logged[1].includes('stream blew up'), logged[1])
        const metrics = await scrape(server.url)
        assert.equal(sample(metrics, 'rendezvous_handler_errors_total', { event: 'ss-dial' }), 1)
        assert.equal(sample(metrics, 'rendezvous_handler_errors_total', { event: 'socket.io-pull-stream' }), 1)
      })
    } finally {
      await client.close()
      await server.stop()
    }
  })
})
