/** Servers for tests: in-process through `start()`, or the real CLI in a child process. */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { OPTION_SPECS, start, type Options, type RendezvousServer } from '../../src/index.js'

/** The built CLI, as `npx rendezvous` runs it. */
export const BIN = fileURLToPath(new URL('../../bin/rendezvous.js', import.meta.url))

/** How long a test waits for something that should happen in milliseconds; only a guard against hangs. */
export const PATIENCE_MS = 20_000

/** A server on a free port of 127.0.0.1; `url` is what clients connect to. */
export async function startServer (options: Options = {}): Promise<RendezvousServer & { url: string }> {
  const server = await start({ port: 0, host: '127.0.0.1', ...options })
  return Object.assign(server, { url: `http://127.0.0.1:${server.info.port}` })
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliServer {
  proc: ChildProcess
  uri: string
  port: number
  /** What the process printed so far. */
  output: () => { stdout: string, stderr: string }
  exited: Promise<Exit>
  /** Sends `signal` and resolves with how the process exited. */
  stop: (signal?: NodeJS.Signals) => Promise<Exit>
}

/** A child process with its output recorded. */
export interface Running {
  proc: ChildProcess
  /** How it ended; a process that could not start ends with code null and the error on stderr. */
  exited: Promise<Exit>
  /** What it printed so far. */
  output: () => { stdout: string, stderr: string }
}

/** Starts `command` with its stdout and stderr recorded. */
export function launch (command: string, args: string[], options: Pick<SpawnOptions, 'cwd' | 'env'> = {}): Running {
  const proc = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = new Promise<Exit>((resolve) => {
    proc.once('error', (err) => { resolve({ code: null, signal: null, stdout, stderr: `${stderr}${String(err)}` }) })
    proc.once('close', (code, signal) => { resolve({ code, signal, stdout, stderr }) })
  })
  return { proc, exited, output: () => ({ stdout, stderr }) }
}

/** Resolves with how `running` exits; kills it with SIGKILL if it takes longer than `patienceMs`. */
export async function finished ({ proc, exited }: Running, patienceMs = PATIENCE_MS): Promise<Exit> {
  const guard = setTimeout(() => proc.kill('SIGKILL'), patienceMs)
  const exit = await exited
  clearTimeout(guard)
  return exit
}

/** The CLI sees only the option variables a test gives it, never the test runner's own PORT or HOST (nor WORKERS, an option of the command only). */
const UNSET_OPTION_ENV = Object.fromEntries([...OPTION_SPECS.map((spec) => spec.env), 'WORKERS'].map((name) => [name, undefined]))

function spawnCli (args: string[], env: Record<string, string | undefined>): Running {
  return launch(process.execPath, [BIN, ...args], { env: { ...process.env, DEBUG: '', ...UNSET_OPTION_ENV, ...env } })
}

/** Runs the CLI to completion (for arguments that make it exit). */
export async function runCli (args: string[], env: Record<string, string | undefined> = {}): Promise<Exit> {
  return await finished(spawnCli(args, env))
}

/** Exit code 2 and one line on stderr matching `names`, without a stack trace. */
export function assertConfigError (exit: Exit, names: RegExp): void {
  const context = JSON.stringify(exit)
  assert.equal(exit.code, 2, context)
  const lines = exit.stderr.split('\n').filter((line) => line !== '')
  assert.equal(lines.length, 1, `one line on stderr: ${context}`)
  const line = lines[0] ?? ''
  assert.match(line, /^rendezvous: /, context)
  assert.match(line, names, context)
  assert.doesNotMatch(line, /\bat .+:\d+:\d+/, context)
  assert.doesNotMatch(exit.stdout, /Listening on/, context)
}

/** Whether `args` or `env` set the option of `flag`/`alias`/`envName`. */
function given (args: string[], env: Record<string, string | undefined>, flag: string, alias: string, envName: string): boolean {
  return env[envName] !== undefined || args.some((arg) => new RegExp(`^(--${flag}|-${alias})(=|$)`).test(arg))
}

/**
 * Starts the CLI and resolves once it prints `Listening on: <uri>`. Listens on
 * a free port of 127.0.0.1 unless `args` or `env` say otherwise.
 */
export async function startCli (args: string[] = [], env: Record<string, string | undefined> = {}): Promise<CliServer> {
  const defaults = [
    ...(given(args, env, 'host', 'h', 'HOST') ? [] : ['--host=127.0.0.1']),
    ...(given(args, env, 'port', 'p', 'PORT') ? [] : ['--port=0'])
  ]
  const { proc, exited, output } = spawnCli([...defaults, ...args], env)
  const uri = await new Promise<string>((resolve, reject) => {
    const guard = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`CLI did not start: ${JSON.stringify(output())}`))
    }, PATIENCE_MS)
    const onData = (): void => {
      const match = /Listening on: (\S+)/.exec(output().stdout)
      if (match?.[1] !== undefined) {
        clearTimeout(guard)
        proc.stdout?.off('data', onData)
        resolve(match[1])
      }
    }
    proc.stdout?.on('data', onData)
    void exited.then((exit) => {
      clearTimeout(guard)
      reject(new Error(`CLI exited before listening: ${JSON.stringify(exit)}`))
    })
  })
  const port = Number(new URL(uri).port)
  return {
    proc,
    uri,
    port,
    output,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return await exited
    }
  }
}
