/**
 * The servers a benchmark compares, each in its own process, measured from
 * outside through procfs: this server's CLI and the old
 * libp2p-websocket-star-rendezvous@0.4.1.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { rssBytes } from '../test/helpers/procfs.js'

export type TargetName = 'new' | 'old'

export interface TargetOptions {
  cryptoChallenge?: boolean
  /** Extra flags for this server's CLI (the old one has none to speak of). */
  args?: string[]
  /** A fixed port; by default the kernel picks one. */
  port?: number
}

/** When a restart's steps happened, epoch ms, as the bench saw them. */
export interface Restart {
  signal: NodeJS.Signals
  signalledAt: number
  exitedAt: number
  /** The exit code, or the signal that ended the process. */
  exit: string
  /** True when the process outlived STOP_PATIENCE_MS and was killed. */
  killed: boolean
  /** When the new process printed that it listens. */
  listeningAt: number
}

export interface Target {
  name: TargetName
  pid: number
  port: number
  url: string
  /** User plus system CPU time the server process has used, in seconds. */
  cpuSeconds: () => number
  rssBytes: () => number
  /** True while the process runs. */
  alive: () => boolean
  stop: () => Promise<void>
  /**
   * Sends `signal`, waits for the process to exit (killing it after
   * STOP_PATIENCE_MS) and starts a new one on the same port; from then on
   * `pid`, `alive`, `rssBytes` and `stop` are the new process's, and
   * `cpuSeconds` adds its CPU to the old one's.
   */
  restart: (signal: NodeJS.Signals) => Promise<Restart>
}

const NEW_BIN = fileURLToPath(new URL('../bin/rendezvous.js', import.meta.url))
const OLD_BIN = createRequire(import.meta.url).resolve('old-rendezvous/src/bin.js')
/** Loaded into the old server first: it runs without this package's optional bufferutil, as it was installed on its own. */
const WITHOUT_BUFFERUTIL = new URL('./without-bufferutil.js', import.meta.url).href
/** Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on. */
const CLOCK_TICKS = 100

/** `pid` and every process below it (the workers of `--workers`). */
export function processTree (pid: number): number[] {
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) {
    try {
      const children = readFileSync(`/proc/${tree[i]}/task/${tree[i]}/children`, 'utf8').trim()
      if (children !== '') tree.push(...children.split(' ').map(Number))
    } catch {}
  }
  return tree
}

/** Summed over a process tree; a process that has just exited counts as nothing. */
function overTree (pid: number, read: (pid: number) => number): number {
  let total = 0
  for (const p of processTree(pid)) {
    try { total += read(p) } catch {}
  }
  return total
}

export function cpuSecondsOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after the command name, which may itself contain spaces
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** How long a signalled server may take to exit before it is killed. */
const STOP_PATIENCE_MS = 30_000
/** While a server stops, its CPU is read this often: a process that has exited can no longer be read. */
const CPU_SAMPLE_MS = 50

interface Process {
  proc: ChildProcess
  pid: number
  port: number
  exited: Promise<void>
}

/** Node.js flags for this server's process, e.g. `BENCH_SERVER_NODE_ARGS=--cpu-prof` to profile it under a scenario. */
function serverNodeArgs (): string[] {
  return (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '')
}

async function launch (name: TargetName, options: TargetOptions): Promise<Process> {
  const crypto = options.cryptoChallenge ?? false
  const port = options.port ?? 0
  let proc: ChildProcess
  const env: NodeJS.ProcessEnv = { ...process.env, DEBUG: '' }
  if (name === 'new') {
    const args = ['--host=127.0.0.1', `--port=${port}`, ...(crypto ? [] : ['--disableCryptoChallenge']), ...(options.args ?? [])]
    proc = spawn(process.execPath, [...serverNodeArgs(), NEW_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  } else {
    // the old CLI reads `--port=0` as "not given"; PORT=0 picks a free port
    const args = ['--host=127.0.0.1', ...(crypto ? [] : ['--disableCryptoChallenge'])]
    proc = spawn(process.execPath, ['--import', WITHOUT_BUFFERUTIL, OLD_BIN, ...args], { env: { ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
  }
  let output = ''
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => { proc.once('exit', () => { resolve() }) })
  const listening = await new Promise<number>((resolve, reject) => {
    let stdout = ''
    const guard = setTimeout(() => { reject(new Error(`${name} server did not start: ${stdout} ${output}`)) }, 20_000)
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      const match = /Listening on:? (\S+)/.exec(stdout)
      if (match?.[1] !== undefined) {
        clearTimeout(guard)
        resolve(Number(new URL(match[1]).port))
      }
    })
    void exited.then(() => { clearTimeout(guard); reject(new Error(`${name} server exited: ${output}`)) })
  })
  return { proc, pid: proc.pid as number, port: listening, exited }
}

const running = (p: Process): boolean => p.proc.exitCode === null && p.proc.signalCode === null

export async function startTarget (name: TargetName, options: TargetOptions = {}): Promise<Target> {
  let current = await launch(name, options)
  const port = current.port
  /** CPU seconds of the processes restarted away. */
  let cpuBefore = 0
  let stopped = false
  // read through a call: TypeScript would keep a check's narrowing across restart()'s awaits, during which stop() can set it
  const isStopped = (): boolean => stopped
  const cpuOf = (p: Process): number => overTree(p.pid, cpuSecondsOf)
  return {
    name,
    get pid () { return current.pid },
    port,
    url: `http://127.0.0.1:${port}`,
    // with --workers the work is done by child processes
    cpuSeconds: () => cpuBefore + cpuOf(current),
    rssBytes: () => overTree(current.pid, rssBytes),
    alive: () => running(current),
    stop: async () => {
      stopped = true
      const p = current
      if (!running(p)) return
      p.proc.kill('SIGINT')
      const guard = setTimeout(() => p.proc.kill('SIGKILL'), 10_000)
      await p.exited
      clearTimeout(guard)
    },
    restart: async (signal) => {
      const p = current
      let lastCpu = cpuOf(p)
      const sampler = setInterval(() => { if (running(p)) lastCpu = Math.max(lastCpu, cpuOf(p)) }, CPU_SAMPLE_MS)
      const signalledAt = Date.now()
      p.proc.kill(signal)
      let killed = false
      const guard = setTimeout(() => { killed = true; p.proc.kill('SIGKILL') }, STOP_PATIENCE_MS)
      await p.exited
      const exitedAt = Date.now()
      clearTimeout(guard)
      clearInterval(sampler)
      cpuBefore += lastCpu
      if (isStopped()) throw new Error('stopped while restarting')
      current = await launch(name, { ...options, port })
      // stopped while it started (a scenario's bound): nobody else will
      if (isStopped()) current.proc.kill('SIGKILL')
      return { signal, signalledAt, exitedAt, exit: String(p.proc.exitCode ?? p.proc.signalCode), killed, listeningAt: Date.now() }
    }
  }
}
