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
}

const NEW_BIN = fileURLToPath(new URL('../bin/rendezvous.js', import.meta.url))
const OLD_BIN = createRequire(import.meta.url).resolve('old-rendezvous/src/bin.js')
/** Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on. */
const CLOCK_TICKS = 100

/** `pid` and every process below it (the workers of `--workers`). */
export function processTree (pid: number): number[] {
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) {
    try {
      const children = readFileSync(`/proc/${tree[i] as number}/task/${tree[i] as number}/children`, 'utf8').trim()
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

export async function startTarget (name: TargetName, options: TargetOptions = {}): Promise<Target> {
  const crypto = options.cryptoChallenge ?? false
  let proc: ChildProcess
  const env: NodeJS.ProcessEnv = { ...process.env, DEBUG: '' }
  if (name === 'new') {
    const args = ['--host=127.0.0.1', '--port=0', ...(crypto ? [] : ['--disableCryptoChallenge']), ...(options.args ?? [])]
    proc = spawn(process.execPath, [NEW_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  } else {
    // the old CLI reads `--port=0` as "not given"; PORT=0 picks a free port
    const args = ['--host=127.0.0.1', ...(crypto ? [] : ['--disableCryptoChallenge'])]
    proc = spawn(process.execPath, [OLD_BIN, ...args], { env: { ...env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  }
  let output = ''
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => { proc.once('exit', () => { resolve() }) })
  const port = await new Promise<number>((resolve, reject) => {
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
  const pid = proc.pid as number
  return {
    name,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    // with --workers the work is done by child processes
    cpuSeconds: () => overTree(pid, cpuSecondsOf),
    rssBytes: () => overTree(pid, rssBytes),
    alive: () => proc.exitCode === null && proc.signalCode === null,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGINT')
      const guard = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(guard)
    }
  }
}
