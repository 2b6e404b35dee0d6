#!/usr/bin/env node
/**
 * The `rendezvous` command (alias `websocket-star`): flags and environment →
 * options → start(); signals; exit codes. Bad configuration exits 2 with one
 * line naming the option.
 */
import nodeCluster from 'node:cluster'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { CLI_DEFAULTS, OPTION_SPECS, OptionError, start, type Options } from '../src/index.js'
import { COMMAND_SPECS, optionsFromCommandLine, type OptionSpec } from '../src/options.js'
import { VERSION } from '../src/version.js'
import { runWorker, runWorkers } from '../src/workers/index.js'

const EXIT_CONFIG = 2

function die (message: string): never {
  process.stderr.write(`rendezvous: ${message}\n`)
  process.exit(EXIT_CONFIG)
}

/** Every flag: the options of start(), then those of the command only (--workers). */
const FLAGS: readonly OptionSpec[] = [...OPTION_SPECS, ...COMMAND_SPECS]

/** The help line of a flag: its text, its default as the command has it, and its variable. */
function describe (spec: OptionSpec): string {
  const fallback = spec.cli ?? spec.library
  const shown = spec.negated === true || fallback === undefined ? '' : ` (default: ${String(fallback)})`
  return `${spec.describe}${shown} [env ${spec.env}]`
}

/** What the signal handlers need of a single server or of the primary of `--workers`. */
interface Running {
  uri: string
  /** The line printed on the first signal. */
  stopping: (signal: NodeJS.Signals) => string
  /** Drains; resolves with the exit code. */
  shutdown: () => Promise<number>
  /** On a second signal, before exiting. */
  kill: () => void
  /** SIGHUP: read the certificates and the peer policy again. */
  reload: () => void
}

async function single (options: Options): Promise<Running> {
  const server = await start(options, CLI_DEFAULTS)
  return {
    uri: server.info.uri,
    stopping: (signal) => {
      const streams = server.stats().relayedStreams
      return streams > 0
        ? `Received ${signal}, stopping: ${streams} relayed streams may finish (send ${signal} again to exit now)`
        : `Received ${signal}, stopping`
    },
    shutdown: async () => {
      await server.shutdown()
      return 0
    },
    kill: () => {},
    reload: () => {
      server.reload().catch((err: unknown) => { process.stderr.write(`rendezvous: reload failed: ${String(err)}\n`) })
    }
  }
}

async function primary (count: number, options: Options): Promise<Running> {
  const workers = await runWorkers(count, options)
  return {
    uri: workers.info.uri,
    stopping: (signal) => `Received ${signal}, stopping ${count} worker${count === 1 ? '' : 's'} (send ${signal} again to exit now)`,
    shutdown: workers.shutdown,
    kill: workers.kill,
    reload: workers.reload
  }
}

/** Flags and environment, as the user gave them, checked: bad ones exit 2 naming the flag or variable. */
async function commandLine (): Promise<ReturnType<typeof optionsFromCommandLine>> {
  const args = hideBin(process.argv)
  let cli = yargs(args)
    .scriptName('rendezvous')
    .usage('$0 [options]\n\nThe rendezvous server for libp2p-websocket-star peers.')
    .version(VERSION)
    .help('help')
    .strict()
    .parserConfiguration({ 'camel-case-expansion': false, 'duplicate-arguments-array': false })
    // yargs passes either a message (its own checks) or a null message and an error, whatever @types/yargs says
    .fail((message: string | null, err: Error | undefined) => { die(message ?? err?.message ?? 'invalid arguments') })
  for (const spec of FLAGS) {
    cli = cli.option(spec.flag, {
      // numbers are parsed by options.ts, so that flags and env vars share one message
      type: spec.kind === 'boolean' ? 'boolean' : 'string',
      describe: describe(spec),
      ...(spec.alias !== undefined ? { alias: spec.alias } : {})
    })
  }
  const argv = await cli.parseAsync()
  // yargs reads `--disableMetrics=<anything but "true">` as false, so that
  // `=1` or `=yes` would silently do nothing: options.ts reads the value as
  // written instead, with the same words and errors as the variable
  for (const spec of FLAGS) {
    if (spec.kind !== 'boolean') continue
    const prefix = `--${spec.flag}=`
    const written = args.filter((arg) => arg.startsWith(prefix)).pop()
    if (written !== undefined) argv[spec.flag] = written.slice(prefix.length)
  }
  try {
    return optionsFromCommandLine(argv, process.env)
  } catch (err) {
    if (err instanceof OptionError) die(err.message)
    throw err
  }
}

/** Starts one server or the primary of `--workers`; what cannot start exits 2 naming the option. */
async function run (options: Options, names: Map<string, string>, workers: number | undefined): Promise<Running> {
  if (workers !== undefined) {
    const name = names.get('workers') ?? '--workers'
    if (options.redis === undefined) die(`${name}: needs --redis (or REDIS_URL): the workers share their peers through Redis`)
    if (options.key !== undefined || options.cert !== undefined || options.pfx !== undefined) {
      die(`${name}: cannot serve TLS (--key, --cert, --pfx): the primary reads each plain HTTP request to route it; terminate TLS at a proxy in front`)
    }
  }
  try {
    return workers !== undefined ? await primary(workers, options) : await single(options)
  } catch (err) {
    if (err instanceof OptionError) {
      // start() names options by key: say it as the user wrote it
      const flag = OPTION_SPECS.find((spec) => spec.key === err.option)?.flag ?? err.option
      die(`${names.get(err.option) ?? `--${flag}`}: ${err.problem}`)
    }
    const code = err instanceof Error && 'code' in err ? err.code : undefined
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      die(`--port/--host: cannot listen on ${options.host ?? CLI_DEFAULTS.host}:${options.port ?? CLI_DEFAULTS.port} (${code})`)
    }
    throw err
  }
}

/** SIGINT and SIGTERM drain the server, a second one exits at once; SIGHUP reloads its files. */
function onSignals (server: Running): void {
  let signalled = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (signalled) {
      process.stderr.write(`rendezvous: ${signal} again, exiting now\n`)
      server.kill()
      process.exit(1)
    }
    signalled = true
    process.stdout.write(`${server.stopping(signal)}\n`)
    server.shutdown().then((code) => {
      if (code === 0) process.stdout.write('Rendezvous server stopped\n')
      else process.stderr.write('rendezvous: a worker did not stop cleanly\n')
      process.exit(code)
    }, (err: unknown) => {
      process.stderr.write(`rendezvous: error while stopping: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
  process.on('SIGHUP', () => { server.reload() })
}

async function main (): Promise<void> {
  const { options, names, command } = await commandLine()
  // a worker of --workers: same command line, same options; the primary prints and handles signals
  if (nodeCluster.isWorker) {
    await runWorker(options)
    return
  }
  const server = await run(options, names, command.workers)
  if (options.cryptoChallenge === false) {
    process.stderr.write('rendezvous: warning: the crypto challenge is disabled, joins are not authenticated\n')
    // an allow or deny list of ids anyone may claim
    if (options.peerPolicy !== undefined) process.stderr.write(`rendezvous: warning: ${names.get('peerPolicy') ?? '--peerPolicy'} is set but the crypto challenge is disabled: any peer may join under an allowed id\n`)
  }
  process.stdout.write(`Listening on: ${server.uri}\n`)
  onSignals(server)
}

main().catch((err: unknown) => {
  process.stderr.write(`rendezvous: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
