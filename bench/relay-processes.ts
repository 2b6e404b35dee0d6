/**
 * The relay bench's peer processes (relay-peer.ts), forked and spoken to over
 * IPC: every message checked on arrival, a failure or an exit in any of them
 * ends the wait, and each one's CPU is read before it is killed.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { inspect } from 'node:util'
import { isFromPeer, type FromPeer, type ToPeer } from './relay-ipc.js'
import { cpuSecondsOf } from './targets.js'

const SCRIPT = fileURLToPath(new URL('./relay-peer.js', import.meta.url))

export class PeerProcess {
  /** Every message so far except progress, in order. */
  readonly messages: FromPeer[] = []
  /** The last progress report: bytes received by this process's receivers. */
  receivedBytes = 0
  /** Set on the first failure, which every later wait throws. */
  failure: string | undefined
  private readonly proc: ChildProcess
  private readonly exited: Promise<void>
  private cpu: number | undefined

  constructor (readonly index: number, onChange: () => void) {
    this.proc = fork(SCRIPT, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
    let stderr = ''
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    this.proc.on('message', (message: unknown) => {
      if (!isFromPeer(message)) this.failure ??= `peer process ${index} sent ${inspect(message)}`
      else if (message.type === 'progress') this.receivedBytes = message.bytes
      else if (message.type === 'failed') this.failure ??= `peer process ${index}: ${message.error}`
      else this.messages.push(message)
      onChange()
    })
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.failure ??= `peer process ${index} exited (${String(code ?? signal)}): ${stderr.trim().slice(-300)}`
        onChange()
        resolve()
      })
    })
  }

  send (message: ToPeer): void {
    this.proc.send(message)
  }

  count (type: FromPeer['type']): number {
    return this.messages.filter((m) => m.type === type).length
  }

  /** Its CPU so far (user + system, seconds); 0 once it has gone. */
  cpuSeconds (): number {
    try { return this.proc.pid === undefined ? 0 : cpuSecondsOf(this.proc.pid) } catch { return 0 }
  }

  /** Reads its CPU (user + system, seconds) and kills it; safe to call twice, answering the same CPU. */
  async stop (): Promise<number> {
    if (this.cpu === undefined) {
      const alive = this.proc.exitCode === null && this.proc.signalCode === null
      this.cpu = alive ? this.cpuSeconds() : 0
      // its own failure from here on is the bench's doing
      this.failure ??= 'stopped'
      if (alive) this.proc.kill('SIGKILL')
    }
    await this.exited
    return this.cpu
  }
}

export class PeerProcesses {
  readonly all: PeerProcess[]
  private wake: (() => void) | undefined

  constructor (count: number) {
    this.all = Array.from({ length: count }, (_, i) => new PeerProcess(i, () => { this.wake?.() }))
  }

  /** Resolves once `condition()` holds; rejects on a process's failure or after `patienceMs`, with `what` and `detail()`. */
  async until (condition: () => boolean, what: string, patienceMs: number, detail: () => string = () => ''): Promise<void> {
    const deadline = Date.now() + patienceMs
    for (;;) {
      const failed = this.all.find((p) => p.failure !== undefined)
      if (failed?.failure !== undefined) throw new Error(failed.failure)
      if (condition()) return
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${patienceMs / 1000} s waiting for ${what}${detail()}`)
      let guard: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => { this.wake = resolve; guard = setTimeout(resolve, left) })
      clearTimeout(guard)
    }
  }

  cpuSeconds (): number {
    return this.all.reduce((sum, p) => sum + p.cpuSeconds(), 0)
  }

  /** Kills them all; resolves with the CPU seconds they used. */
  async stop (): Promise<number> {
    let cpu = 0
    for (const cpuOfOne of await Promise.all(this.all.map(async (p) => await p.stop()))) cpu += cpuOfOne
    return cpu
  }
}
