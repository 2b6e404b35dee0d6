/**
 * Relay scenarios: `pairs` relays at once between real socket.io-client 2.x
 * peers in `processes` peer processes (relay-processes.ts), each process
 * holding the senders of some pairs and the receivers of others, so that no
 * sender shares an event loop with its receiver and neither shares one with
 * the bench. Measured: the throughput of all the relays together, and the
 * server's CPU and peak RSS meanwhile; each stream checked by its sha256.
 */
import { randomAddress } from '../test/helpers/keys.js'
import type { ScenarioContext } from './figures.js'
import { expectedSha256 } from './relay-data.js'
import type { Delivered, PairPlan } from './relay-ipc.js'
import { PeerProcesses } from './relay-processes.js'
import type { Target } from './targets.js'

const MiB = 1024 * 1024
/** How long joining and dialing may take, untimed. */
const SETUP_PATIENCE_MS = 30_000
const RSS_SAMPLE_MS = 20

export interface RelayPlan {
  pairs: number
  /** Peer processes; the sender of pair k is in process k mod `processes`, its receiver in the next one. */
  processes: number
  chunkBytes: number
  bytesPerRelay: number
}

export interface RelayResult extends RelayPlan {
  totalBytes: number
  seconds: number
  mibPerSecond: number
  idleRssMiB: number
  peakRssMiB: number
  /** Server CPU (user + system) during the transfer, from procfs. */
  serverCpuSeconds: number
  /** The peer processes' CPU during the transfer, to set beside the server's: the clients' share of the machine. */
  peerCpuSeconds: number
  /** Theirs over their whole lives (joins, dials, making the chunks too). */
  peerLifeCpuSeconds: number
  /** Pairs whose bytes, sha256 or end were not what was sent. */
  altered: number[]
  intact: boolean
}

function plans (plan: RelayPlan): PairPlan[] {
  const count = Math.ceil(plan.bytesPerRelay / plan.chunkBytes)
  return Array.from({ length: plan.pairs }, (_, pair) => ({ pair, from: randomAddress(), to: randomAddress(), chunkBytes: plan.chunkBytes, count }))
}

export async function relayThroughput (target: Target, context: ScenarioContext, plan: RelayPlan, limitMs: number): Promise<RelayResult> {
  if (plan.processes < 2) throw new Error('a sender and its receiver need two processes')
  const pairs = plans(plan)
  // before any process starts: hashing hundreds of MiB is the bench's own work
  const expected = pairs.map((p) => expectedSha256(p.pair, p.count, p.chunkBytes))
  const peers = new PeerProcesses(plan.processes)
  let peerCpu: number | undefined
  const stop = async (): Promise<number> => {
    if (peerCpu === undefined) {
      peerCpu = await peers.stop()
      context.helperCpu(peerCpu)
    }
    return peerCpu
  }
  context.defer(async () => { await stop() })
  const n = plan.processes
  peers.all.forEach((p, i) => {
    p.send({ type: 'setup', url: target.url, senders: pairs.filter((q) => q.pair % n === i), receivers: pairs.filter((q) => (q.pair + 1) % n === i) })
  })
  await peers.until(() => peers.all.every((p) => p.count('joined') === 1), `${plan.pairs * 2} peers joining`, SETUP_PATIENCE_MS)
  for (const p of peers.all) p.send({ type: 'dial' })
  await peers.until(() => peers.all.every((p) => p.count('dialed') === 1), `${plan.pairs} dials`, SETUP_PATIENCE_MS)

  const idle = target.rssBytes()
  let peak = idle
  const sampler = setInterval(() => { try { peak = Math.max(peak, target.rssBytes()) } catch {} }, RSS_SAMPLE_MS)
  const received = (): Delivered[] =>
    peers.all.flatMap((p) => p.messages.flatMap((m) => m.type === 'received' ? [m] : []))
  const cpu0 = target.cpuSeconds()
  const peerCpu0 = peers.cpuSeconds()
  const started = process.hrtime.bigint()
  for (const p of peers.all) p.send({ type: 'go' })
  try {
    const sent = pairs.reduce((sum, p) => sum + p.count * p.chunkBytes, 0)
    const delivered = (): string => ` (${(peers.all.reduce((sum, p) => sum + p.receivedBytes, 0) / MiB).toFixed(1)} of ${(sent / MiB).toFixed(0)} MiB delivered)`
    await peers.until(() => received().length === plan.pairs, `${plan.pairs} relays of ${plan.bytesPerRelay / MiB} MiB`, limitMs, delivered)
  } finally {
    clearInterval(sampler)
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const serverCpuSeconds = target.cpuSeconds() - cpu0
  const peerCpuSeconds = peers.cpuSeconds() - peerCpu0
  peak = Math.max(peak, target.rssBytes())
  const results = received()
  const altered = pairs.filter((p) => {
    const r = results.find((m) => m.pair === p.pair)
    return r?.bytes !== p.count * p.chunkBytes || r.sha256 !== expected[p.pair] || r.end !== true
  }).map((p) => p.pair)
  const totalBytes = results.reduce((sum, r) => sum + r.bytes, 0)
  return {
    ...plan,
    totalBytes,
    seconds,
    mibPerSecond: totalBytes / MiB / seconds,
    idleRssMiB: idle / MiB,
    peakRssMiB: peak / MiB,
    serverCpuSeconds,
    peerCpuSeconds,
    peerLifeCpuSeconds: await stop(),
    altered,
    intact: altered.length === 0
  }
}
