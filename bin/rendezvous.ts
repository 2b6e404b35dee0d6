#!/usr/bin/env node
/**
 * The `rendezvous` command (alias `websocket-star`): flags and environment →
 * options → start(); signals; exit codes. Bad configuration exits 2 with one
 * line naming the option.
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { CLI_DEFAULTS, OPTION_SPECS, OptionError, start, type Options } from '../src/index.js'
import { optionsFromCommandLine } from '../src/options.js'
import { VERSION } from '../src/version.js'

const EXIT_CONFIG = 2

function die (message: string): never {
  process.stderr.write(`rendezvous: ${message}\n`)
  process.exit(EXIT_CONFIG)
}

function describe (spec: typeof OPTION_SPECS[number]): string {
  const fallback = (CLI_DEFAULTS as unknown as Record<string, unknown>)[spec.key]
  const shown = spec.negated === true || fallback === undefined ? '' : ` (default: ${String(fallback)})`
  return `${spec.describe}${shown} [env ${spec.env}]`
}

async function main (): Promise<void> {
  const args = hideBin(process.argv)
  let cli = yargs(args)
    .scriptName('rendezvous')
    .usage('$0 [options]\n\nThe rendezvous server for libp2p-websocket-star peers.')
    .version(VERSION)
    .help('help')
    .strict()
    .parserConfiguration({ 'camel-case-expansion': false, 'duplicate-arguments-array': false })
    .fail((message, err) => { die(message ?? err?.message ?? 'invalid arguments') })
  for (const spec of OPTION_SPECS) {
    cli = cli.option(spec.flag, {
      // numbers are parsed by options.ts, so that flags and env vars share one message
      type: spec.kind === 'boolean' ? 'boolean' : 'string',
      describe: describe(spec),
      ...(spec.alias !== undefined ? { alias: spec.alias } : {})
    })
  }
  const argv = await cli.parseAsync() as Record<string, unknown>
  // yargs reads `--disableMetrics=<anything but "true">` as false, so that
  // `=1` or `=yes` would silently do nothing: options.ts reads the value as
  // written instead, with the same words and errors as the variable
  for (const spec of OPTION_SPECS) {
    if (spec.kind !== 'boolean') continue
    const prefix = `--${spec.flag}=`
    const written = args.filter((arg) => arg.startsWith(prefix)).pop()
    if (written !== undefined) argv[spec.flag] = written.slice(prefix.length)
  }

  let options: Options
  let names: Map<string, string>
  try {
    ({ options, names } = optionsFromCommandLine(argv, process.env))
  } catch (err) {
    if (err instanceof OptionError) die(err.message)
    throw err
  }

  let server
  try {
    server = await start(options, CLI_DEFAULTS)
  } catch (err) {
    if (err instanceof OptionError) {
      // start() names options by key: say it as the user wrote it
      const flag = OPTION_SPECS.find((spec) => spec.key === err.option)?.flag ?? err.option
      die(`${names.get(err.option) ?? `--${flag}`}: ${err.problem}`)
    }
    const e = err as NodeJS.ErrnoException
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      die(`--port/--host: cannot listen on ${String(options.host ?? CLI_DEFAULTS.host)}:${String(options.port ?? CLI_DEFAULTS.port)} (${e.code})`)
    }
    throw err
  }
  if (options.cryptoChallenge === false) {
    process.stderr.write('rendezvous: warning: the crypto challenge is disabled, joins are not authenticated\n')
  }
  process.stdout.write(`Listening on: ${server.info.uri}\n`)

  let signalled = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (signalled) {
      process.stderr.write(`rendezvous: ${signal} again, exiting now\n`)
      process.exit(1)
    }
    signalled = true
    const streams = server.stats().relayedStreams
    process.stdout.write(streams > 0
      ? `Received ${signal}, stopping: ${streams} relayed streams may finish (send ${signal} again to exit now)\n`
      : `Received ${signal}, stopping\n`)
    server.shutdown().then(() => {
      process.stdout.write('Rendezvous server stopped\n')
      process.exit(0)
    }, (err: unknown) => {
      process.stderr.write(`rendezvous: error while stopping: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

main().catch((err: unknown) => {
  process.stderr.write(`rendezvous: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
