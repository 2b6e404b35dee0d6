/**
 * A real Redis for the cluster tests: Debian's redis-server on a free port of
 * 127.0.0.1, with nothing persisted, in a fresh directory. Without
 * redis-server the cluster tests skip with `NO_REDIS` as the reason; CI
 * installs it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findExecutable } from './executable.js'
import { freePort } from './ports.js'
import { within } from './wait.js'

/** The line redis-server logs once it accepts connections (7.x adds the listener kinds after it). */
const READY_LINE = 'Ready to accept connections'

/** The redis-server executable the tests run, if there is one; `REDIS_SERVER_PATH` overrides where it is looked for. */
export const REDIS_SERVER_EXECUTABLE: string | undefined = findExecutable('redis-server', 'REDIS_SERVER_PATH')

/** Whether redis-server is installed, so the cluster tests can run. */
export function redisAvailable (): boolean {
  return REDIS_SERVER_EXECUTABLE !== undefined
}

/** A skip reason for `describe(..., { skip: NO_REDIS })`, or false when redis-server is there. */
export const NO_REDIS: string | false = REDIS_SERVER_EXECUTABLE === undefined
  ? `redis-server not installed: no executable at ${process.env.REDIS_SERVER_PATH !== undefined ? `REDIS_SERVER_PATH=${process.env.REDIS_SERVER_PATH}` : '/usr/bin/redis-server or redis-server on PATH'} (apt-get install redis-server)`
  : false

export interface RedisProcess {
  port: number
  /** What the server's `redis` option takes: `redis://127.0.0.1:<port>`. */
  url: string
  /** Everything every run of redis-server on this port has logged so far. */
  log: () => string
  /**
   * Sends one command over a connection of its own and resolves with the raw
   * RESP reply, e.g. `':3\r\n'` for `HLEN`; an error reply (`-ERR ...`)
   * resolves too, as text.
   */
  command: (...args: string[]) => Promise<string>
  /** SIGTERM, as an orderly shutdown; waits for the exit. Safe to call twice. */
  stop: () => Promise<void>
  /** SIGKILL, as a crash; waits for the exit. Safe to call twice. */
  kill: () => Promise<void>
  /** Starts an empty redis-server again on the same port after stop() or kill(); resolves once it is ready. */
  restart: () => Promise<void>
}

/**
 * Servers still running, with their directories. A test that forgets one
 * neither hangs on it (the processes are unref'd) nor leaves it behind: on
 * exit it is killed and its directory removed, since its 'close' will never
 * be handled.
 */
const running = new Map<ChildProcess, string>()
process.once('exit', () => {
  for (const [proc, dir] of running) {
    proc.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

/** Whether `proc` and its output pipes keep the test process alive. */
function holdOpen (proc: ChildProcess, hold: boolean): void {
  for (const handle of [proc, proc.stdout as Socket | null, proc.stderr as Socket | null]) {
    if (hold) handle?.ref()
    else handle?.unref()
  }
}


/** One redis-server process; resolves once it is ready, rejects with its log if it exits first. */
async function run (port: number, appendLog: (text: string) => void): Promise<{ proc: ChildProcess, exited: Promise<void> }> {
  if (REDIS_SERVER_EXECUTABLE === undefined) throw new Error(String(NO_REDIS))
  // Each run gets its own directory so nothing one run left behind reaches the next.
  const dir = mkdtempSync(join(tmpdir(), 'rendezvous-redis-'))
  const proc = spawn(REDIS_SERVER_EXECUTABLE, [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--dir', dir,
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--logfile', ''
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  running.set(proc, dir)
  holdOpen(proc, false)
  let output = ''
  const exited = new Promise<void>((resolve) => {
    proc.once('close', () => {
      running.delete(proc)
      rmSync(dir, { recursive: true, force: true })
      resolve()
    })
  })
  const ready = new Promise<void>((resolve, reject) => {
    const onOutput = (chunk: string): void => {
      output += chunk
      appendLog(chunk)
      if (output.includes(READY_LINE)) resolve()
    }
    proc.stdout.setEncoding('utf8').on('data', onOutput)
    proc.stderr.setEncoding('utf8').on('data', onOutput)
    proc.once('error', reject)
    void exited.then(() => { reject(new Error(`redis-server on port ${port} exited before it was ready:\n${output}`)) })
  })
  try {
    await within(ready, `redis-server on port ${port} to accept connections`)
  } catch (err) {
    holdOpen(proc, true)
    proc.kill('SIGKILL')
    await exited
    throw err
  }
  return { proc, exited }
}

/** Starts redis-server on a free port of 127.0.0.1; resolves once it accepts connections. */
export async function startRedis (): Promise<RedisProcess> {
  let log = ''
  const appendLog = (text: string): void => { log += text }
  // Another process may take the free port before redis-server binds it; a few tries make that harmless.
  let port = 0
  let current: { proc: ChildProcess, exited: Promise<void> } | undefined
  for (let attempt = 1; current === undefined; attempt++) {
    port = await freePort()
    try {
      current = await run(port, appendLog)
    } catch (err) {
      if (attempt === 3) throw err
    }
  }
  let active: { proc: ChildProcess, exited: Promise<void> } | undefined = current

  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (active === undefined) return
    const { proc, exited } = active
    active = undefined
    // Waiting for the exit must keep the test process alive, or it could end mid-await.
    holdOpen(proc, true)
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    await exited
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    log: () => log,
    command: async (...args) => await command(port, args),
    stop: async () => { await end('SIGTERM') },
    kill: async () => { await end('SIGKILL') },
    restart: async () => {
      if (active !== undefined) throw new Error(`redis-server on port ${port} is still running; stop() or kill() it first`)
      active = await run(port, appendLog)
    }
  }
}

/** The command as a RESP array of bulk strings, the form every Redis accepts. */
function encode (args: string[]): Buffer {
  const parts = [`*${args.length}\r\n`]
  for (const arg of args) parts.push(`$${Buffer.byteLength(arg)}\r\n${arg}\r\n`)
  return Buffer.from(parts.join(''))
}

/**
 * The length in bytes of the complete RESP reply at `offset` of `buf`, or
 * undefined while more bytes are needed. Bulk lengths count bytes, which is
 * why the reply is kept as a Buffer until it is whole.
 */
function replyLength (buf: Buffer, offset = 0): number | undefined {
  const lineEnd = buf.indexOf('\r\n', offset)
  if (lineEnd === -1) return undefined
  const header = lineEnd + 2 - offset
  const type = String.fromCharCode(buf[offset] ?? 0)
  const count = Number(buf.toString('utf8', offset + 1, lineEnd))
  switch (type) {
    case '+': case '-': case ':':
      return header
    case '$':
      if (count < 0) return header
      return buf.length >= lineEnd + 2 + count + 2 ? header + count + 2 : undefined
    case '*': {
      let length = header
      for (let i = 0; i < count; i++) {
        const element = replyLength(buf, offset + length)
        if (element === undefined) return undefined
        length += element
      }
      return length
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buf.toString('utf8', offset))}`)
  }
}

async function command (port: number, args: string[]): Promise<string> {
  const socket = createConnection({ port, host: '127.0.0.1' })
  const reply = new Promise<string>((resolve, reject) => {
    let received = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      try {
        const length = replyLength(received)
        if (length !== undefined) resolve(received.toString('utf8', 0, length))
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
    socket.once('error', reject)
    socket.once('close', () => { reject(new Error(`redis-server on port ${port} closed the connection before answering ${args.join(' ')}`)) })
    socket.write(encode(args))
  })
  try {
    return await within(reply, `redis-server on port ${port} to answer ${args.join(' ')}`)
  } finally {
    socket.destroy()
  }
}
