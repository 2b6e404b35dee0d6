/**
 * `--peerPolicy <file>`: which peer ids may join. The file is read at start,
 * on `reload()` (SIGHUP) and when it changes; a file that fails to load is
 * logged and the rules in force are kept. This module owns the rules.
 *
 * Two formats. JSON: `{ "allow": [ids], "deny": [ids] }`, both optional.
 * Text: section headers `[allow]` and `[deny]` on lines of their own, then
 * one peer id per line; `#` starts a comment; blank lines are ignored:
 *
 *     # our own nodes
 *     [allow]
 *     12D3KooW...
 *     [deny]
 *     QmYyQ...   # lost its key
 *
 * When `allow` lists anything, only those ids may join; `deny` is refused
 * always. Ids are base58btc (`Qm…`, `12D3…`) or CIDv1 (`bafz…`) and compare
 * in one form, so either form matches the other.
 */
import { readFileSync } from 'node:fs'
import debug from 'debug'
import { peerIdFromString } from '@libp2p/peer-id'
import { POLICY_WATCH_DEBOUNCE_MS } from './constants.js'
import { FileWatch } from './file-watch.js'
import { errorMessage, logError } from './log.js'

const log = debug('rendezvous:policy')

export interface PolicyRules {
  /** Normalised peer ids; empty means everyone not denied. */
  allow: ReadonlySet<string>
  deny: ReadonlySet<string>
}

/** The rules without a policy file: everyone may join. */
export const OPEN_POLICY: PolicyRules = { allow: new Set(), deny: new Set() }

/** The base58btc form of a peer id in either form, or undefined when it is not a peer id. */
export function normalisePeerId (id: string): string | undefined {
  try {
    return peerIdFromString(id).toString()
  } catch {
    return undefined
  }
}

function normalised (id: string, where: string): string {
  const peerId = normalisePeerId(id)
  if (peerId === undefined) throw new Error(`${where}: ${JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}…` : id)} is not a peer id`)
  return peerId
}

function parseJson (text: string): PolicyRules {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(`not valid JSON (${errorMessage(err)})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('JSON must be an object with "allow" and/or "deny"')
  const lists: Record<string, unknown> = { ...parsed }
  for (const key of Object.keys(lists)) {
    if (key !== 'allow' && key !== 'deny') throw new Error(`unknown key ${JSON.stringify(key)} (only "allow" and "deny")`)
  }
  const list = (key: 'allow' | 'deny'): Set<string> => {
    const value = lists[key] ?? []
    if (!Array.isArray(value)) throw new Error(`"${key}" must be an array of peer ids`)
    return new Set(value.map((id: unknown, i) => {
      if (typeof id !== 'string') throw new Error(`"${key}"[${i}] must be a string`)
      return normalised(id.trim(), `"${key}"[${i}]`)
    }))
  }
  return { allow: list('allow'), deny: list('deny') }
}

function parseText (text: string): PolicyRules {
  const allow = new Set<string>()
  const deny = new Set<string>()
  let section: Set<string> | undefined
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const where = `line ${i + 1}`
    const header = /^\[\s*(\w+)\s*\]$/.exec(line)
    if (header !== null) {
      const name = header[1].toLowerCase()
      if (name !== 'allow' && name !== 'deny') throw new Error(`${where}: unknown section [${header[1]}] (only [allow] and [deny])`)
      section = name === 'allow' ? allow : deny
      continue
    }
    if (section === undefined) throw new Error(`${where}: a peer id before any [allow] or [deny] section`)
    if (/\s/.test(line)) throw new Error(`${where}: one peer id per line`)
    section.add(normalised(line, where))
  }
  return { allow, deny }
}

/** The rules of a policy file's text: JSON when it starts with `{`, the text format otherwise. Throws an Error saying what is wrong, and where. */
export function parsePolicy (text: string): PolicyRules {
  return text.trimStart().startsWith('{') ? parseJson(text) : parseText(text)
}

/** Reads and parses a policy file; the error names the file. */
export function readPolicy (file: string): PolicyRules {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new Error(`cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`)
  }
  try {
    return parsePolicy(text)
  } catch (err) {
    throw new Error(`${JSON.stringify(file)}: ${errorMessage(err)}`)
  }
}

/** Whether `rules` let the peer id `peerId` (as written in an address) join. */
export function allows (rules: PolicyRules, peerId: string): boolean {
  if (rules.allow.size === 0 && rules.deny.size === 0) return true
  const id = normalisePeerId(peerId) ?? peerId
  if (rules.deny.has(id)) return false
  return rules.allow.size === 0 || rules.allow.has(id)
}

/**
 * The policy in force. Without a file everyone may join and nothing is
 * watched. `changed` is told after new rules replaced the old ones, so that
 * joined peers they refuse can be released.
 */
export class PeerPolicy {
  private rules: PolicyRules
  private readonly fileWatch: FileWatch | undefined

  constructor (private readonly file: string | undefined, private readonly changed: () => void) {
    this.rules = file === undefined ? OPEN_POLICY : readPolicy(file)
    if (file !== undefined) log('%s: %d allowed, %d denied', file, this.rules.allow.size, this.rules.deny.size)
    this.fileWatch = file === undefined ? undefined : new FileWatch([file], POLICY_WATCH_DEBOUNCE_MS, () => { this.reload() }, 'peer policy')
  }

  get allowed (): number {
    return this.rules.allow.size
  }

  get denied (): number {
    return this.rules.deny.size
  }

  allows (peerId: string): boolean {
    return allows(this.rules, peerId)
  }

  /** Reads the file again; a file that fails to load is logged and the rules in force kept. */
  reload (): void {
    if (this.file === undefined) return
    try {
      this.rules = readPolicy(this.file)
    } catch (err) {
      logError('peer policy not reloaded, the previous one stays in force: %s', errorMessage(err))
      return
    }
    log('reloaded %s: %d allowed, %d denied', this.file, this.rules.allow.size, this.rules.deny.size)
    this.changed()
  }

  /** Reloads when the file changes, replaced by a rename (as editors and config management write) too. */
  watch (): void {
    this.fileWatch?.start()
  }

  stop (): void {
    this.fileWatch?.stop()
  }
}
