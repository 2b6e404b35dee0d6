/** /metrics scraped and parsed with a real Prometheus exposition-format parser. */
import parse from 'parse-prometheus-text-format'
import { PATIENCE_MS } from './server.js'
import { eventually } from './wait.js'

type Family = ReturnType<typeof parse>[number]

export interface Scraped {
  /** The exposition as served. */
  text: string
  /** Its Content-Type header. */
  contentType: string
  /** Families by name, with their declared types. */
  families: Map<string, Family>
  /**
   * Every sample by its own name (`x_count`, `x_bucket`…). The parser drops the
   * labels of labelled histograms, so histograms are read a second time with
   * their TYPE lines made `untyped`, which keeps each sample as it is.
   */
  samples: Map<string, Family>
}

export async function scrape (url: string): Promise<Scraped> {
  const res = await fetch(`${url}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  const text = await res.text()
  // untyped samples of one name come back as several families when other names
  // stand between them (x_count{a} after x_bucket{b}…): merge them
  const byName = (list: Family[]): Map<string, Family> => {
    const map = new Map<string, Family>()
    for (const family of list) {
      const seen = map.get(family.name)
      if (seen === undefined) map.set(family.name, { ...family, metrics: [...family.metrics] })
      else seen.metrics.push(...family.metrics)
    }
    return map
  }
  return {
    text,
    contentType: res.headers.get('content-type') ?? '',
    families: byName(parse(text)),
    samples: byName(parse(text.replace(/^# TYPE (\S+) histogram$/gm, '# TYPE $1 untyped')))
  }
}

function find (m: Scraped, name: string, labels: Record<string, string>): number | undefined {
  const found = m.samples.get(name)?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v))
  return found?.value === undefined ? undefined : Number(found.value)
}

/** The value of a counter or gauge sample (the first whose labels include `labels`). */
export function sample (m: Scraped, name: string, labels: Record<string, string> = {}): number {
  const value = find(m, name, labels)
  if (value === undefined) throw new Error(`no sample of ${name} with ${JSON.stringify(labels)}`)
  return value
}

/**
 * The value of the one unlabelled sample of `name`: throws when there is
 * none, or more than one (two registries exporting the same metric).
 */
export function onlySample (m: Scraped, name: string): number {
  const unlabelled = m.samples.get(name)?.metrics.filter((s) => Object.keys(s.labels ?? {}).length === 0) ?? []
  if (unlabelled.length !== 1) throw new Error(`${unlabelled.length} unlabelled samples of ${name}, not exactly one, in:\n${m.text}`)
  return Number(unlabelled[0]?.value)
}

/** How many observations a histogram holds with these labels (0 when none yet). */
export function observations (m: Scraped, name: string, labels: Record<string, string> = {}): number {
  if (m.families.get(name)?.type !== 'HISTOGRAM') throw new Error(`${name} is not a histogram`)
  return find(m, `${name}_count`, labels) ?? 0
}

/** A sample, or `fallback` when the metric is absent (a labelled counter not incremented yet). */
export function sampleOr (m: Scraped, name: string, labels: Record<string, string> = {}, fallback = 0): number {
  try {
    return sample(m, name, labels)
  } catch {
    return fallback
  }
}

/**
 * Resolves with the first scrape of `url` that satisfies `condition`, every
 * `everyMs`; on timeout the error names `what` and what `explain` reads from
 * the last scrape.
 */
export async function untilScraped (url: string, condition: (m: Scraped) => boolean, what: string, explain: (m: Scraped) => string, patienceMs: number, everyMs = 25): Promise<Scraped> {
  return await eventually(async () => await scrape(url), condition, what, { patienceMs, everyMs, seen: explain })
}

/** Resolves once the counter or gauge `name` of `url` is `value`, scraping every 20 ms. */
export async function untilSample (url: string, name: string, value: number, patienceMs = PATIENCE_MS): Promise<Scraped> {
  return await untilScraped(url, (m) => sample(m, name) === value, `${name} is ${value} on ${url}`, (m) => `it is ${sample(m, name)}`, patienceMs, 20)
}
