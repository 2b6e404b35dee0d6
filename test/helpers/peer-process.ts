/**
 * A peer in a child process (test/fixtures/peer-process.mjs) that a test can
 * freeze with SIGSTOP: its socket stays open while it reads nothing and
 * answers no heartbeat, as when a peer's machine sleeps or its link stalls.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ClientVersion, Transport } from './clients.js'
import { within } from './wait.js'

const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/peer-process.mjs', import.meta.url))

/** One JSON line the child printed; see the script for the events. */
export interface PeerEvent {
  event: 'joined' | 'incoming' | 'data' | 'end' | 'disconnect' | 'error'
  [field: string]: unknown
}

export interface PeerProcess {
  proc: ChildProcess
  address: string
  /** Every event so far, in order. */
  events: PeerEvent[]
  /** Resolves with the first event, past or future, that satisfies `accept`. */
  next: (accept: (e: PeerEvent) => boolean, what: string, patienceMs?: number) => Promise<PeerEvent>
  /** SIGSTOP: the process freezes, its sockets stay open. */
  freeze: () => void
  /** SIGCONT. */
  thaw: () => void
  /** SIGCONT then SIGKILL, and waits for the exit; safe to call twice. */
  kill: () => Promise<void>
}

/** Starts a peer process that joins `address` on `url`; resolves once it has joined. */
export async function spawnPeer (url: string, address: string, version: ClientVersion, transport: Transport = 'websocket'): Promise<PeerProcess> {
  const proc = spawn(process.execPath, [SCRIPT, url, version, transport, address], { stdio: ['ignore', 'pipe', 'pipe'] })
  const events: PeerEvent[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let pending = ''
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) if (line !== '') events.push(JSON.parse(line) as PeerEvent)
    for (const wake of [...waiters]) wake()
  })
  const exited = new Promise<void>((resolve) => { proc.once('close', () => { resolve() }) })
  const alive = (): boolean => proc.exitCode === null && proc.signalCode === null

  const next = async (accept: (e: PeerEvent) => boolean, what: string, patienceMs?: number): Promise<PeerEvent> => {
    let wake: (() => void) | undefined
    try {
      return await within(new Promise<PeerEvent>((resolve, reject) => {
        wake = () => {
          const found = events.find(accept)
          if (found !== undefined) resolve(found)
          else if (!alive() && pending === '') reject(new Error(`peer process exited before ${what}: ${stderr}`))
        }
        waiters.add(wake)
        void exited.then(wake)
        wake()
      }), `peer process: ${what}`, patienceMs)
    } finally {
      if (wake !== undefined) waiters.delete(wake)
    }
  }

  const peer: PeerProcess = {
    proc,
    address,
    events,
    next,
    freeze: () => { proc.kill('SIGSTOP') },
    thaw: () => { proc.kill('SIGCONT') },
    kill: async () => {
      if (alive()) {
        proc.kill('SIGCONT')
        proc.kill('SIGKILL')
      }
      await exited
    }
  }
  try {
    const joined = await next((e) => e.event === 'joined' || e.event === 'error', `joining ${address}`)
    if (joined.event === 'error') throw new Error(`peer process could not join: ${String(joined.message)}`)
  } catch (err) {
    await peer.kill()
    throw err
  }
  return peer
}
