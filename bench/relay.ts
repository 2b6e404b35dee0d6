/**
 * Scenario (d): relay throughput through one dial between two real
 * socket.io-client 2.x peers, and the server's peak RSS meanwhile.
 */
import { connect, type Client } from '../test/helpers/clients.js'
import { randomAddress } from '../test/helpers/keys.js'
import { makeChunks, relay, send, sha256 } from '../test/helpers/streams.js'
import { within } from '../test/helpers/wait.js'
import { errorText } from './error-text.js'
import type { Target } from './targets.js'

const MiB = 1024 * 1024

export interface RelayResult {
  chunkBytes: number
  totalBytes: number
  seconds: number
  mibPerSecond: number
  idleRssMiB: number
  peakRssMiB: number
  /** Server CPU (user + system) during the transfer, from procfs. */
  serverCpuSeconds: number
  intact: boolean
}

async function joined (url: string): Promise<{ client: Client, address: string }> {
  const client = await connect(url, 'v2')
  const address = randomAddress()
  const [err] = await client.request('ss-join', address, '')
  if (err !== null) throw new Error(`join failed: ${errorText(err)}`)
  return { client, address }
}

export async function relayThroughput (target: Target, chunkBytes: number, totalBytes: number, limitMs: number): Promise<RelayResult> {
  const a = await joined(target.url)
  const b = await joined(target.url)
  try {
    const r = await relay(a.client, a.address, b.client, b.address)
    await within(r.dialerMaySend, 'the server accepting the stream')
    const count = Math.ceil(totalBytes / chunkBytes)
    const idle = target.rssBytes()
    let peak = idle
    const sampler = setInterval(() => { try { peak = Math.max(peak, target.rssBytes()) } catch {} }, 20)
    const started = process.hrtime.bigint()
    const cpu0 = target.cpuSeconds()
    send(a.client, r.forward, makeChunks(count, chunkBytes))
    let received
    try {
      received = await within(r.atListener.done, `${count} chunks of ${chunkBytes} bytes`, limitMs)
    } catch {
      throw new Error(`timed out after ${limitMs / 1000} s with ${(r.atListener.received / MiB).toFixed(1)} of ${(count * chunkBytes / MiB).toFixed(0)} MiB delivered`)
    } finally {
      clearInterval(sampler)
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const serverCpuSeconds = target.cpuSeconds() - cpu0
    peak = Math.max(peak, target.rssBytes())
    return {
      chunkBytes,
      totalBytes: received.bytes,
      seconds,
      mibPerSecond: received.bytes / MiB / seconds,
      idleRssMiB: idle / MiB,
      peakRssMiB: peak / MiB,
      serverCpuSeconds,
      intact: received.bytes === count * chunkBytes && received.sha256 === sha256(makeChunks(count, chunkBytes))
    }
  } finally {
    a.client.socket.disconnect()
    b.client.socket.disconnect()
  }
}
