/**
 * The soak: cycle after cycle, many peers connect to two servers (crypto
 * challenge on and off), join, dial each other, relay byte-exact both ways,
 * leave relays half-open and challenges unanswered, and go away politely,
 * by closing the transport, or by cutting their TCP connections mid-stream.
 * Two resident peers stay connected throughout and are dialed by everyone,
 * never answering, as long-lived peers on a public server are. Afterwards
 * every table of the server must be back where it was, every timer and
 * handle gone, and the heap after garbage collection within a small margin
 * of where it started.
 *
 * The servers run in a child process of their own, `node --expose-gc
 * soak-server.js`, which answers 'report' and 'gc' over IPC. In one process
 * with the clients, the heap would also hold the clients' sockets, buffers
 * and their own garbage, so that a server leak of a few MiB would hide in
 * the clients' noise; the child's heap is the server's alone, and its
 * `maxRSS` is the server's peak.
 */
import assert from 'node:assert/strict'
import { fork, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { Agent, type ClientRequestArgs } from 'node:http'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { ERRORS, type Options, type ServerStats } from '../../src/index.js'
import { connect, type Client, type ClientVersion, type Transport } from './clients.js'
import { joinWithChallenge } from './join.js'
import { addressOf, libp2pIdentity, randomAddress, type Identity } from './keys.js'
import type { SoakMessage, SoakReport, SoakRequest } from './soak-server.js'
import { PATIENCE_MS } from './server.js'
import { STREAM, makeChunks, relay, send, sha256 } from './streams.js'
import { TimedOut, eventually, within } from './wait.js'

const MiB = 1024 * 1024
const SOAK_SERVER = fileURLToPath(new URL('./soak-server.js', import.meta.url))

/** Every internal table of the server: what must be empty once every peer is gone. */
export const TABLES = [
  'peers', 'connections', 'joinedConnections', 'pendingChallenges', 'challengeConnections',
  'announcedAddresses', 'relayedStreams', 'dials', 'relayConnections', 'pausedSenders',
  'limitedConnections', 'remoteAddresses', 'socketListeners'
] as const satisfies ReadonlyArray<keyof ServerStats>

/**
 * A polling peer cut while a response to it is in flight has no request
 * left open for the server to see close: only the heartbeat notices it.
 */
const PING_INTERVAL_MS = 2500
const PING_TIMEOUT_MS = 2500

/** Options of both servers: short enough that every timer path runs within a cycle. */
const COMMON: Options = {
  refreshPeerListIntervalMS: 1000,
  // every cycle has dials that time out; the others are established in milliseconds
  dialTimeoutMS: 2000,
  pingIntervalMS: PING_INTERVAL_MS,
  pingTimeoutMS: PING_TIMEOUT_MS
}

/** The server with the crypto challenge is set up as the CLI's defaults are: strict multiaddrs, metrics on. */
export const SOAK_SERVERS: readonly Options[] = [
  { ...COMMON, cryptoChallenge: true, strictMultiaddr: true, metrics: true },
  { ...COMMON, cryptoChallenge: false, strictMultiaddr: false, metrics: false }
]

/** The child process that runs the servers. */
export class SoakServers {
  private nextId = 0
  private readonly waiting = new Map<number, { resolve: (r: SoakReport) => void, reject: (e: Error) => void }>()

  private constructor (private readonly proc: ChildProcess, readonly urls: string[]) {
    proc.on('message', (message: SoakMessage) => {
      if (!('id' in message)) return
      const waiter = this.waiting.get(message.id)
      this.waiting.delete(message.id)
      if ('error' in message) waiter?.reject(new Error(message.error))
      else waiter?.resolve(message.report)
    })
    proc.once('exit', (code, signal) => {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`soak server exited (${code ?? signal ?? ''})`))
      this.waiting.clear()
    })
  }

  static async start (options: readonly Options[] = SOAK_SERVERS): Promise<SoakServers> {
    const proc = fork(SOAK_SERVER, [JSON.stringify(options)], {
      execArgv: ['--expose-gc'],
      env: { ...process.env, DEBUG: '' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const urls = await within(new Promise<string[]>((resolve, reject) => {
      proc.once('message', (message: SoakMessage) => { if ('ready' in message) resolve(message.urls) })
      proc.once('exit', (code) => { reject(new Error(`soak server exited with ${code ?? 'a signal'} before listening`)) })
    }), 'the soak servers to listen')
    return new SoakServers(proc, urls)
  }

  async report (): Promise<SoakReport> { return await this.request('report') }
  /** A report taken after full garbage collections. */
  async gc (): Promise<SoakReport> { return await this.request('gc') }
  /** Writes a heap snapshot of the server process to `path`. */
  async snapshot (path: string): Promise<SoakReport> { return await this.request('snapshot', path) }

  /** Stops the servers and waits for the process to end. */
  async stop (): Promise<SoakReport> {
    const exited = new Promise<void>((resolve) => { this.proc.once('exit', () => { resolve() }) })
    const last = await this.request('stop')
    await within(exited, 'the soak server process to exit')
    return last
  }

  kill (): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL')
  }

  private async request (command: SoakRequest['command'], path?: string): Promise<SoakReport> {
    const id = this.nextId++
    const answer = new Promise<SoakReport>((resolve, reject) => { this.waiting.set(id, { resolve, reject }) })
    this.proc.send({ id, command, ...(path !== undefined ? { path } : {}) } satisfies SoakRequest)
    return await within(answer, `the soak server's ${command}`)
  }
}

/** An HTTP agent that remembers every TCP connection it opened, so a peer can vanish without a word. */
class CuttableAgent extends Agent {
  private readonly opened = new Set<Duplex>()

  override createConnection (options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = super.createConnection(options, callback)
    if (socket !== null && socket !== undefined) {
      this.opened.add(socket)
      socket.once('close', () => { this.opened.delete(socket) })
    }
    return socket
  }

  /** Destroys every connection: the server sees them drop mid-whatever, with no close frame or packet. */
  cut (): void {
    for (const socket of this.opened) socket.destroy()
  }
}

/** How a peer goes away. */
type Exit =
  /** `ss-leave` for every address, then a Socket.IO disconnect. */
  | 'polite'
  /** Engine.IO closes its transport: the server sees "transport close", with no Socket.IO disconnect. */
  | 'transport'
  /** Its TCP connections are destroyed. */
  | 'cut'

interface Kind { version: ClientVersion, transport: Transport, upgrade: boolean }

/** Half over websocket, a quarter over polling, a quarter starting on polling and upgrading. */
const KINDS: readonly Kind[] = [
  { version: 'v2', transport: 'websocket', upgrade: false },
  { version: 'v4', transport: 'websocket', upgrade: false },
  { version: 'v2', transport: 'polling', upgrade: false },
  { version: 'v4', transport: 'polling', upgrade: false },
  { version: 'v4', transport: 'websocket', upgrade: false },
  { version: 'v2', transport: 'websocket', upgrade: false },
  { version: 'v4', transport: 'polling', upgrade: true },
  { version: 'v2', transport: 'polling', upgrade: true }
]

/** One server as the clients see it. */
interface Side {
  url: string
  challenge: boolean
  resident: string
  /** Identities for this cycle's joins, handed out in turn (challenge side only). */
  identities: Identity[]
  nextIdentity: number
}

function takeIdentity (side: Side): Identity {
  return side.identities[side.nextIdentity++ % side.identities.length]
}

interface Joined { address: string, signature: string | undefined }

class Peer {
  readonly addresses: string[] = []

  private constructor (readonly client: Client, private readonly agent: CuttableAgent, readonly side: Side) {}

  static async open (side: Side, kind: Kind): Promise<Peer> {
    const agent = new CuttableAgent()
    const extra = kind.upgrade ? { agent, transports: ['polling', 'websocket'] } : { agent }
    const client = await connect(side.url, kind.version, kind.transport, extra)
    return new Peer(client, agent, side)
  }

  /** Joins with a new address (through the crypto challenge on that side), or with `identity`'s. */
  async join (identity?: Identity): Promise<Joined> {
    let address: string
    let signature: string | undefined
    let answer: unknown[]
    if (this.side.challenge) {
      const id = identity ?? takeIdentity(this.side)
      address = addressOf(id.id)
      ;({ answer, signature } = await joinWithChallenge(this.client, address, id))
    } else {
      address = randomAddress()
      answer = await this.client.request('ss-join', address, '')
    }
    const [err, nonce, others] = answer
    assert.equal(err, null, `join of ${address}`)
    assert.equal(nonce, null)
    assert.ok(Array.isArray(others) && others.includes(this.side.resident), 'the join answer lists the resident peer')
    this.addresses.push(address)
    return { address, signature }
  }

  /**
   * Dials the resident peer, which never answers, twice, as a peer that
   * tries again would; the answers are not awaited. Whatever the server keeps
   * per dial on a long-lived connection piles up over the cycles.
   */
  dialResident (): void {
    for (let i = 0; i < 2; i++) this.client.emit('ss-dial', this.addresses[0], this.side.resident, randomUUID(), () => {})
  }

  async dial (from: string, to: string): Promise<unknown[]> {
    return await this.client.request('ss-dial', from, to, randomUUID())
  }

  async exit (how: Exit): Promise<void> {
    const socket = this.client.socket as Client['socket'] & { io: { engine: { close: () => void } } }
    const gone = new Promise<void>((resolve) => {
      if (!socket.connected) resolve()
      socket.on('disconnect', () => { resolve() })
    })
    switch (how) {
      case 'polite':
        for (const address of this.addresses) this.client.emit('ss-leave', address)
        socket.disconnect()
        break
      case 'transport':
        socket.io.engine.close()
        break
      case 'cut':
        this.agent.cut()
    }
    // the agent is not destroyed: that would cut a polite peer's last requests short
    await within(gone, `${how} exit`)
  }
}

/**
 * Marks a promise that is awaited later as handled, so that if an earlier
 * step fails, its own guard's timeout does not end the process; awaiting it
 * still rejects.
 */
function settled<T> (promise: Promise<T>): Promise<T> {
  promise.catch(() => {})
  return promise
}

/** A dialer and a listener of the first two kinds, connected. */
async function openPair (side: Side, kinds: Kind[]): Promise<[Peer, Peer]> {
  return await Promise.all([Peer.open(side, kinds[0]), Peer.open(side, kinds[1])])
}

/** A dialer and a listener of the first two kinds, connected and joined. */
async function joinedPair (side: Side, kinds: Kind[]): Promise<{ d: Peer, l: Peer, dj: Joined, lj: Joined }> {
  const [d, l] = await openPair(side, kinds)
  const [dj, lj] = await Promise.all([d.join(), l.join()])
  return { d, l, dj, lj }
}

/** What one unit of a cycle does with its peers, from connecting to their exits. */
type Scenario = (side: Side, kinds: Kind[], cycle: number) => Promise<number>

/** Relays both ways, byte-exact, ends both streams; the listener's own dial to the resident times out. */
const complete: Scenario = async (side, kinds) => {
  const { d, l, dj, lj } = await joinedPair(side, kinds)
  d.dialResident()
  const timedOut = settled(l.client.request('ss-dial', lj.address, side.resident, randomUUID()))
  const r = await relay(d.client, dj.address, l.client, lj.address)
  const there = [...makeChunks(40, 4096)]
  const back = [...makeChunks(25, 333)]
  await r.dialerMaySend
  send(d.client, r.forward, there)
  await r.listenerMaySend
  send(l.client, r.back, back, 'goodbye')
  assert.deepEqual(await within(r.atListener.done, 'the forward stream'), { bytes: 40 * 4096, chunks: 40, sha256: sha256(there), end: true })
  assert.deepEqual(await within(r.atDialer.done, 'the back stream'), { bytes: 25 * 333, chunks: 25, sha256: sha256(back), end: 'goodbye' })
  if (dj.signature !== undefined) {
    // the proved signature stays valid for this connection: leave, and join again with it
    d.client.emit('ss-leave', dj.address)
    const [err] = await d.client.request('ss-join', dj.address, dj.signature)
    assert.equal(err, null, 're-join with the proved signature')
  }
  assert.deepEqual(await timedOut, [ERRORS.DIAL_TIMEOUT])
  await Promise.all([d.exit('polite'), l.exit('polite')])
  return 40 * 4096 + 25 * 333
}

/** One side's TCP connections are cut while 2 MiB flow; the other hears both streams end. */
const cutMidRelay: Scenario = async (side, kinds, cycle) => {
  const { d, l, dj, lj } = await joinedPair(side, kinds)
  d.dialResident()
  l.dialResident()
  const r = await relay(d.client, dj.address, l.client, lj.address)
  await r.dialerMaySend
  const flowing = new Promise<void>((resolve) => { r.atListener.onChunk = () => { resolve() } })
  send(d.client, r.forward, makeChunks(128, 16 * 1024), null)
  await within(flowing, 'the first relayed chunk')
  const [victim, survivor, ends] = cycle % 2 === 0
    ? [l, d, [settled(d.client.next(`${STREAM}error.${r.forward}`)), r.atDialer.done.then((x) => [x.end])]]
    : [d, l, [settled(l.client.next(`${STREAM}error.${r.back}`)), r.atListener.done.then((x) => [x.end])]]
  await victim.exit('cut')
  for (const end of ends) assert.deepEqual(await within(end, 'the end heard by the survivor'), [true])
  await survivor.exit('polite')
  return r.atListener.received
}

/** The back stream is never ended; the dialer closes its transport with it open. */
const halfOpen: Scenario = async (side, kinds) => {
  const { d, l, dj, lj } = await joinedPair(side, kinds)
  d.dialResident()
  const r = await relay(d.client, dj.address, l.client, lj.address)
  const there = [...makeChunks(10, 1000)]
  const back = [...makeChunks(10, 1500)]
  await r.dialerMaySend
  send(d.client, r.forward, there)
  await r.listenerMaySend
  send(l.client, r.back, back, null)
  assert.deepEqual(await within(r.atListener.done, 'the forward stream'), { bytes: 10000, chunks: 10, sha256: sha256(there), end: true })
  await within(new Promise<void>((resolve) => {
    if (r.atDialer.received === 15000) resolve()
    r.atDialer.onChunk = () => { if (r.atDialer.received === 15000) resolve() }
  }), 'the back stream\'s bytes')
  const endAtListener = settled(l.client.next(`${STREAM}error.${r.back}`))
  await d.exit('transport')
  assert.deepEqual(await endAtListener, [true])
  await l.exit(side.challenge ? 'cut' : 'polite')
  return 25000
}

/**
 * The listener never answers and vanishes; the dialer hears "Peer not found",
 * or "Dial timeout" if the listener polls: cut between two polls, it is
 * noticed only by the heartbeat, which may come after the dial's timeout.
 */
const unanswered: Scenario = async (side, kinds) => {
  const { d, l, dj, lj } = await joinedPair(side, kinds)
  l.dialResident()
  const incoming = l.client.next('ss-incomming')
  const answer = settled(d.dial(dj.address, lj.address))
  await incoming
  await l.exit('cut')
  const [error] = await answer
  const polls = kinds[1].transport === 'polling'
  assert.ok(error === ERRORS.PEER_NOT_FOUND || (polls && error === ERRORS.DIAL_TIMEOUT), `dial to a vanished ${polls ? 'polling ' : ''}listener answered ${String(error)}`)
  await d.exit('polite')
  return 0
}

/** The listener refuses the dial. */
const refused: Scenario = async (side, kinds) => {
  const { d, l, dj, lj } = await joinedPair(side, kinds)
  d.dialResident()
  l.client.socket.on('ss-incomming', (_id: string, _from: string, answer: (err: string) => void) => { answer('busy') })
  assert.deepEqual(await d.dial(dj.address, lj.address), ['busy'])
  await Promise.all([d.exit('cut'), l.exit('polite')])
  return 0
}

/** A second connection takes an address over from a connection holding two. */
const takeover: Scenario = async (side, kinds) => {
  const [x, y] = await openPair(side, kinds)
  const identity = side.challenge ? takeIdentity(side) : undefined
  let taken: string
  if (identity !== undefined) {
    taken = (await x.join(identity)).address
    await y.join(identity)
  } else {
    taken = (await x.join()).address
    const [err] = await y.client.request('ss-join', taken, '')
    assert.equal(err, null)
    y.addresses.push(taken)
  }
  const kept = await x.join()
  x.dialResident()
  assert.deepEqual(await x.dial(taken, kept.address), [ERRORS.NOT_AUTHORIZED])
  await Promise.all([x.exit('transport'), y.exit('polite')])
  return 0
}

/** Leaves crypto challenges unanswered (or, without the challenge, sends nonsense) and goes. */
const pending: Scenario = async (side, kinds, cycle) => {
  const p = await Peer.open(side, kinds[0])
  if (side.challenge) {
    for (const identity of [takeIdentity(side), takeIdentity(side)]) {
      const [err, nonce] = await p.client.request('ss-join', addressOf(identity.id), identity.publicKeyHex)
      assert.equal(err, null)
      assert.equal(typeof nonce, 'string')
    }
  } else {
    assert.deepEqual(await p.client.request('ss-join', 42), [ERRORS.INVALID_REQUEST])
    p.client.emit('ss-leave', randomAddress())
  }
  await p.exit(cycle % 2 === 0 ? 'cut' : 'transport')
  return 0
}

const UNITS: ReadonlyArray<{ name: string, peers: 1 | 2, run: Scenario }> = [
  { name: 'complete', peers: 2, run: complete },
  { name: 'cut mid-relay', peers: 2, run: cutMidRelay },
  { name: 'half-open', peers: 2, run: halfOpen },
  { name: 'pending', peers: 1, run: pending },
  { name: 'unanswered', peers: 2, run: unanswered },
  { name: 'refused', peers: 2, run: refused },
  { name: 'takeover', peers: 2, run: takeover },
  { name: 'pending', peers: 1, run: pending }
]

/** Cycle numbers (which choose the units and kinds) of the warm-up. */
const WARM_UP_CYCLES = [0, UNITS.length / 2]

/**
 * `count` peers on one side, in units taken in turn from a place that moves
 * every cycle, so that over a few cycles every unit runs with every kind of
 * client. Resolves with the bytes relayed once every peer is gone.
 */
async function cycleOn (side: Side, count: number, cycle: number): Promise<number> {
  side.nextIdentity = 0
  const runs: Array<Promise<number>> = []
  let used = 0
  for (let u = cycle; used < count; u++) {
    let unit = UNITS[u % UNITS.length]
    if (unit.peers > count - used) unit = UNITS[3]
    const kinds = Array.from({ length: unit.peers }, (_, i) => KINDS[(used + i + cycle) % KINDS.length])
    runs.push(unit.run(side, kinds, cycle).catch((err: unknown) => {
      throw new Error(`cycle ${cycle}, ${side.challenge ? 'challenge' : 'no challenge'}, ${unit.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }))
    used += unit.peers
  }
  const bytes = await Promise.all(runs)
  return bytes.reduce((a, b) => a + b, 0)
}

interface Waited<T> { ok: boolean, value: T, why: string }

/**
 * `eventually`, probing every 10 ms, that resolves instead of throwing when
 * its patience runs out: `why` then names what was awaited and what was seen
 * last, and `value` is that last value.
 */
async function settledWithin<T> (probe: () => Promise<T>, check: (value: T) => boolean, what: string, seen: (value: T) => string, patienceMs = PATIENCE_MS): Promise<Waited<T>> {
  try {
    return { ok: true, value: await eventually(probe, check, what, { patienceMs, everyMs: 10, seen }), why: '' }
  } catch (err) {
    if (!(err instanceof TimedOut)) throw err
    return { ok: false, value: err.last as T, why: err.message }
  }
}

function tablesOf (stats: ServerStats): Record<string, number> {
  return Object.fromEntries(TABLES.map((t) => [t, stats[t]]))
}

function differences (expected: Record<string, number>, actual: Record<string, number>): string[] {
  const keys = new Set([...Object.keys(expected), ...Object.keys(actual)])
  return [...keys].filter((k) => (expected[k] ?? 0) !== (actual[k] ?? 0)).map((k) => `${k} ${expected[k] ?? 0} → ${actual[k] ?? 0}`)
}

function mib (bytes: number): string {
  return (bytes / MiB).toFixed(2)
}

export interface SoakOptions {
  cycles: number
  /** Peers per cycle, over both servers. */
  clients: number
  /** How far above its warm baseline the heap may end. */
  heapMarginBytes?: number
  /** Run until this much time has passed instead, however many cycles that takes. */
  durationMs?: number
  /** Told after every cycle; `heap` is a collected figure, taken every `gcEvery` cycles. */
  progress?: (p: Progress) => void
  gcEvery?: number
  /** A directory to write the server's heap snapshots to, at the warm baseline and at the end. */
  snapshots?: string
  /** Told as each phase begins, and of every wait longer than a second. */
  log?: (message: string) => void
}

export interface Progress {
  cycle: number
  elapsedMs: number
  report: SoakReport
  collected: boolean
}

export interface SoakResult {
  cycles: number
  clients: number
  durationMs: number
  /** After garbage collection with no peer connected: after the warm-up, and at the end. */
  heapStartBytes: number
  heapEndBytes: number
  /** After garbage collection with the two resident peers connected: before the first cycle, and after the last. */
  residentHeapStartBytes: number
  residentHeapEndBytes: number
  /** Socket.IO sockets not garbage-collected, with the two residents connected and at the end. */
  liveSockets: [number, number]
  peakRssBytes: number
  relayedBytes: number
  /** The servers' tables at the end, once every peer is gone. */
  tables: Array<Record<string, number>>
  /** Live handles of the server process (timers aside): with no peer connected after the warm-up, and at the end. */
  resourcesStart: Record<string, number>
  resourcesEnd: Record<string, number>
  /** Timers left running at the end: none may be, but for Engine.IO's bounded polling close timers. */
  timersEnd: number
  pollingCloseTimersEnd: number
  /** Every check that did not hold, with its figures; empty when nothing leaked. */
  failures: string[]
}

/** One line per figure, for a test's diagnostics or the long run's output. */
export function describeResult (r: SoakResult): string[] {
  return [
    `soak: cycles ${r.cycles}, clients ${r.clients}, heap start ${mib(r.heapStartBytes)} MiB end ${mib(r.heapEndBytes)} MiB, peak RSS ${mib(r.peakRssBytes)} MiB`,
    `soak: with the resident peers connected, heap start ${mib(r.residentHeapStartBytes)} MiB end ${mib(r.residentHeapEndBytes)} MiB`,
    `soak: sockets not garbage-collected: ${r.liveSockets[0]} with the residents connected, ${r.liveSockets[1]} at the end`,
    `soak: ${(r.durationMs / 1000).toFixed(1)} s, ${mib(r.relayedBytes)} MiB relayed`,
    `soak: tables at the end: ${r.tables.map((t) => JSON.stringify(t)).join(' ')}`,
    `soak: handles: start ${JSON.stringify(r.resourcesStart)} end ${JSON.stringify(r.resourcesEnd)}; timers at the end ${r.timersEnd} (and ${r.pollingCloseTimersEnd} of Engine.IO's polling close timers)`,
    ...r.failures.map((f) => `soak: FAILED ${f}`)
  ]
}

/** Connects and joins the two resident peers: they stay through every cycle and never answer a dial. */
async function residentsJoin (sides: Side[], identities: Identity[]): Promise<Peer[]> {
  return await Promise.all(sides.map(async (side, i) => {
    const kind = i === 0 ? KINDS[0] : KINDS[3]
    const peer = await Peer.open(side, kind)
    if (side.challenge) {
      const id = identities[i]
      const address = addressOf(id.id)
      assert.equal((await joinWithChallenge(peer.client, address, id)).answer[0], null)
      side.resident = address
    } else {
      side.resident = randomAddress()
      const [err] = await peer.client.request('ss-join', side.resident, '')
      assert.equal(err, null)
    }
    peer.addresses.push(side.resident)
    return peer
  }))
}

/** Runs the soak against a fresh pair of servers and measures what they kept. */
export async function soak (options: SoakOptions): Promise<SoakResult> {
  const { cycles, clients, heapMarginBytes = 2 * MiB, gcEvery = 10, log = () => {} } = options
  /** `settledWithin`, telling `log` of every wait longer than a second. */
  const waitUntil: typeof settledWithin = async (probe, check, what, seen, patienceMs) => {
    const since = Date.now()
    const waited = await settledWithin(probe, check, what, seen, patienceMs)
    if (Date.now() - since > 1000) log(`${((Date.now() - since) / 1000).toFixed(1)} s until ${what}`)
    return waited
  }
  const servers = await SoakServers.start()
  const started = Date.now()
  const failures: string[] = []
  try {
    const perSide = [Math.ceil(clients / 2), Math.floor(clients / 2)]
    // two identities per peer at most per cycle, and the residents'
    const pool = await Promise.all(Array.from({ length: 2 * perSide[0] + 4 }, async () => await libp2pIdentity('Ed25519')))
    const residentIds = pool.splice(0, 2)
    const sides: Side[] = servers.urls.map((url, i) => ({ url, challenge: i === 0, resident: '', identities: pool, nextIdentity: 0 }))
    let relayedBytes = 0
    /** Runs a cycle and resolves once the server has seen every one of its peers go (the residents stay). */
    const runCycle = async (cycle: number, residents: Peer[]): Promise<SoakReport> => {
      const bytes = await Promise.all(sides.map(async (side, i) => await cycleOn(side, perSide[i], cycle)))
      relayedBytes += bytes.reduce((a, b) => a + b, 0)
      for (const p of residents) p.client.peerEvents.length = 0
      const gone = await waitUntil(async () => await servers.report(), (r) => r.stats.every((s) => s.connections === 1), `cycle ${cycle}'s peers are gone`, (r) => JSON.stringify(r.stats.map(tablesOf)))
      if (!gone.ok) throw new Error(gone.why)
      return gone.value
    }
    const allGone = async (what: string): Promise<SoakReport> => {
      const waited = await waitUntil(async () => await servers.report(), (r) => r.stats.every((s) => TABLES.every((t) => s[t] === 0)), what,
        (r) => r.stats.map((s) => JSON.stringify(tablesOf(s))).join(' '))
      if (!waited.ok) failures.push(waited.why)
      return waited.value
    }

    // warm-up: with the residents, so that every code path has run and every pool has grown once
    log('warm-up cycles')
    let residents = await residentsJoin(sides, residentIds)
    // two cycles whose units, between them, are every unit: the code of every path is compiled before the baseline
    for (const cycle of WARM_UP_CYCLES) await runCycle(cycle, residents)
    await Promise.all(residents.map(async (p) => { await p.exit('polite') }))
    residents = []
    await allGone('every table is empty after the warm-up')
    // the handles of an idle server: its listening sockets and the IPC channel
    const resourcesStart = { ...(await servers.report()).resources }
    delete resourcesStart.Immediate
    const emptyStart = await servers.gc()
    if (options.snapshots !== undefined) await servers.snapshot(join(options.snapshots, 'soak-start.heapsnapshot'))
    log(`warm: heap ${mib(emptyStart.heapUsedBytes)} MiB after gc, ${JSON.stringify(resourcesStart)}`)

    residents = await residentsJoin(sides, residentIds)
    const withResidents = await waitUntil(async () => await servers.report(), (r) => r.stats.every((s) => s.connections === 1 && s.peers === 1), 'the residents have joined', (r) => JSON.stringify(r.stats.map(tablesOf)))
    const residentTables = withResidents.value.stats.map(tablesOf)
    const residentStart = await servers.gc()

    let cycle = 0
    const deadline = options.durationMs === undefined ? Infinity : started + options.durationMs
    while (options.durationMs !== undefined ? Date.now() < deadline : cycle < cycles) {
      cycle++
      const report = await runCycle(cycle, residents)
      const collected = cycle % gcEvery === 0
      options.progress?.({ cycle, elapsedMs: Date.now() - started, report: collected ? await servers.gc() : report, collected })
    }

    log('checking the tables and the heap with the residents connected')
    // with the residents still connected: their tables as before the cycles, and the heap too
    const settled = await waitUntil(async () => await servers.report(), (r) => r.stats.every((s, i) => differences(residentTables[i], tablesOf(s)).length === 0),
      'the tables are as they were with only the residents', (r) => r.stats.map((s, i) => differences(residentTables[i], tablesOf(s)).join(', ')).join(' | '))
    if (!settled.ok) failures.push(settled.why)
    const residentSockets = await waitUntil(async () => await servers.gc(), (r) => r.liveSockets === residents.length,
      'the sockets of every departed peer are garbage-collected', (r) => `${r.liveSockets} live, ${residents.length} connected`)
    if (!residentSockets.ok) failures.push(residentSockets.why)
    const residentEnd = await waitUntil(async () => await servers.gc(), (r) => r.heapUsedBytes <= residentStart.heapUsedBytes + heapMarginBytes,
      `the heap with the residents is back within ${mib(heapMarginBytes)} MiB of ${mib(residentStart.heapUsedBytes)} MiB`, (r) => `${mib(r.heapUsedBytes)} MiB`)
    if (!residentEnd.ok) failures.push(residentEnd.why)

    log('checking that nothing remains once the residents are gone')
    // then the residents go, one politely, one cut off: nothing may remain
    await Promise.all(residents.map(async (p, i) => { await p.exit(i === 0 ? 'polite' : 'cut') }))
    residents = []
    const end = await allGone('every table is empty at the end')
    // and no timer keeping its event loop alive (see soak-server.ts for the one kind let run)
    const timers = await waitUntil(async () => await servers.report(), (r) => r.timers === 0 && differences(resourcesStart, r.resources).length === 0,
      'the handles are back to those after the warm-up and no timer runs', (r) => [...differences(resourcesStart, r.resources), `${r.timers} timers`, ...r.timerStacks].join(', '))
    if (!timers.ok) failures.push(timers.why)
    const endSockets = await waitUntil(async () => await servers.gc(), (r) => r.liveSockets === 0,
      'every socket is garbage-collected', (r) => `${r.liveSockets} live`)
    if (!endSockets.ok) failures.push(endSockets.why)
    const emptyEnd = await waitUntil(async () => await servers.gc(), (r) => r.heapUsedBytes <= emptyStart.heapUsedBytes + heapMarginBytes,
      `the heap is back within ${mib(heapMarginBytes)} MiB of ${mib(emptyStart.heapUsedBytes)} MiB`, (r) => `${mib(r.heapUsedBytes)} MiB`)
    if (!emptyEnd.ok) failures.push(emptyEnd.why)
    if (options.snapshots !== undefined) await servers.snapshot(join(options.snapshots, 'soak-end.heapsnapshot'))

    const last = await servers.stop()
    return {
      cycles: cycle,
      clients,
      durationMs: Date.now() - started,
      heapStartBytes: emptyStart.heapUsedBytes,
      heapEndBytes: emptyEnd.value.heapUsedBytes,
      residentHeapStartBytes: residentStart.heapUsedBytes,
      residentHeapEndBytes: residentEnd.value.heapUsedBytes,
      liveSockets: [residentSockets.value.liveSockets, endSockets.value.liveSockets],
      peakRssBytes: last.maxRssBytes,
      relayedBytes,
      tables: end.stats.map(tablesOf),
      resourcesStart,
      resourcesEnd: timers.value.resources,
      timersEnd: timers.value.timers,
      pollingCloseTimersEnd: timers.value.pollingCloseTimers,
      failures
    }
  } finally {
    servers.kill()
  }
}
