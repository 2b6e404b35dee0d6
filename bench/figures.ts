/** The figures scenarios report, and the one table that shows both servers side by side. */

/** One figure a scenario reports; `better` says which way is good. */
export interface Figure {
  label: string
  unit: string
  better: 'higher' | 'lower'
  value: number | undefined
  /** Set when this figure could not be measured (the rest of the scenario may still have been). */
  error?: string
  /** Qualifies a value measured under different conditions than asked (e.g. fewer peers joined): shown next to it, and no ratio is drawn. */
  note?: string
  /** Table heading for this figure when it is not the scenario's name: one server run can feed several of issue 5's scenarios. */
  group?: string
}

/** Everything a scenario needs to release, whatever happens: run after it ends or hits its bound. */
export interface ScenarioContext {
  defer: (cleanup: () => void | Promise<void>) => void
  /** CPU seconds the scenario's own helper processes used, so that they do not count as other processes' load. */
  helperCpu: (seconds: number) => void
}

export interface Row {
  scenario: string
  label: string
  unit: string
  better: 'higher' | 'lower'
  new?: number
  old?: number
  newError?: string
  oldError?: string
  newNote?: string
  oldNote?: string
}

const MAX_ERROR_CHARS = 44

function format (value: number | undefined, error: string | undefined, note: string | undefined): string {
  if (error !== undefined) return `failed: ${error.length > MAX_ERROR_CHARS ? error.slice(0, MAX_ERROR_CHARS - 1) + '…' : error}`
  if (value === undefined) return '-'
  const number = value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)
  return note === undefined ? number : `${number} (${note})`
}

function ratio (row: Row): string {
  if (row.new === undefined || row.old === undefined || row.newError !== undefined || row.oldError !== undefined) return '-'
  if (row.newNote !== undefined || row.oldNote !== undefined) return '-'
  const r = row.better === 'higher' ? row.new / row.old : row.old / row.new
  if (row.new === row.old) return '1.00×'
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : r === Infinity ? '∞' : '-'
}

/** The table; `columns` name the `new` and `old` columns. */
export function table (rows: Row[], columns: [string, string] = ['this server', 'old 0.4.1']): string {
  const header = ['scenario', 'figure', ...columns, 'better by']
  const lines = rows.map((row) => [row.scenario, `${row.label} (${row.unit === '' ? '' : `${row.unit}, `}${row.better} is better)`, format(row.new, row.newError, row.newNote), format(row.old, row.oldError, row.oldNote), ratio(row)])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)))
  const render = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [render(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...lines.map(render)].join('\n')
}
