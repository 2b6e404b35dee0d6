/**
 * `npm run bench`: runs every scenario against this server and against
 * libp2p-websocket-star-rendezvous@0.4.1, alternating, each in a fresh server
 * process measured from outside; prints one table and writes a JSON file.
 *
 *   npm run bench -- --only=relay     run only the scenarios whose name contains "relay"
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { relayThroughput } from './relay.js'
import { startTarget, type Target, type TargetName, type TargetOptions } from './targets.js'

const MiB = 1024 * 1024

/** One figure a scenario reports; `better` says which way is good. */
export interface Figure {
  label: string
  unit: string
  better: 'higher' | 'lower'
  value: number | undefined
}

interface Scenario {
  name: string
  options?: TargetOptions
  run: (target: Target) => Promise<Figure[]>
}

const scenarios: Scenario[] = [
  {
    name: 'relay 64 MiB in 64 KiB chunks',
    run: async (target) => {
      const r = await relayThroughput(target, 64 * 1024, 64 * MiB, 120_000)
      if (!r.intact) throw new Error('data arrived altered')
      return [
        { label: 'throughput', unit: 'MiB/s', better: 'higher', value: r.mibPerSecond },
        { label: 'server peak RSS above idle', unit: 'MiB', better: 'lower', value: r.peakRssMiB - r.idleRssMiB }
      ]
    }
  },
  {
    name: 'relay 16 MiB in 1 KiB chunks',
    run: async (target) => {
      const r = await relayThroughput(target, 1024, 16 * MiB, 120_000)
      if (!r.intact) throw new Error('data arrived altered')
      return [
        { label: 'throughput', unit: 'MiB/s', better: 'higher', value: r.mibPerSecond },
        { label: 'server peak RSS above idle', unit: 'MiB', better: 'lower', value: r.peakRssMiB - r.idleRssMiB }
      ]
    }
  }
]

interface Row {
  scenario: string
  label: string
  unit: string
  better: 'higher' | 'lower'
  new?: number
  old?: number
  newError?: string
  oldError?: string
}

function progress (line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

async function runOn (name: TargetName, scenario: Scenario): Promise<Figure[] | Error> {
  progress(`${scenario.name}: ${name === 'new' ? 'this server' : 'old server 0.4.1'}`)
  let target: Target | undefined
  try {
    target = await startTarget(name, scenario.options)
    return await scenario.run(target)
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err))
  } finally {
    await target?.stop()
  }
}

function format (value: number | undefined, error: string | undefined): string {
  if (error !== undefined) return `failed: ${error.length > 38 ? error.slice(0, 37) + '…' : error}`
  if (value === undefined) return '-'
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)
}

function ratio (row: Row): string {
  if (row.new === undefined || row.old === undefined || row.newError !== undefined || row.oldError !== undefined) return '-'
  const r = row.better === 'higher' ? row.new / row.old : row.old / row.new
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '-'
}

function table (rows: Row[]): string {
  const header = ['scenario', 'figure', 'this server', 'old 0.4.1', 'better by']
  const lines = rows.map((row) => [row.scenario, `${row.label} (${row.unit}, ${row.better} is better)`, format(row.new, row.newError), format(row.old, row.oldError), ratio(row)])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)))
  const render = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [render(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...lines.map(render)].join('\n')
}

async function main (): Promise<void> {
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length)
  const chosen = scenarios.filter((s) => only === undefined || s.name.includes(only))
  const rows: Row[] = []
  for (const scenario of chosen) {
    // alternate: this server, then the old one, each in a fresh process
    const results = { new: await runOn('new', scenario), old: await runOn('old', scenario) }
    const labels = [results.new, results.old].find((r): r is Figure[] => Array.isArray(r)) ?? []
    if (labels.length === 0) rows.push({ scenario: scenario.name, label: 'run', unit: '', better: 'higher', newError: (results.new as Error).message, oldError: (results.old as Error).message })
    for (const figure of labels) {
      const row: Row = { scenario: scenario.name, label: figure.label, unit: figure.unit, better: figure.better }
      for (const name of ['new', 'old'] as const) {
        const result = results[name]
        if (result instanceof Error) row[`${name}Error`] = result.message
        else row[name] = result.find((f) => f.label === figure.label)?.value
      }
      rows.push(row)
    }
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}`
  process.stdout.write(`\n${table(rows)}\n\nMachine: ${machine}\n`)
  mkdirSync('bench-results', { recursive: true })
  const file = 'bench-results/latest.json'
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), machine, rows }, null, 2))
  process.stdout.write(`Results: ${file}\n`)
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`)
  process.exit(1)
})
