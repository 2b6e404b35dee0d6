import { readFileSync } from 'node:fs'
import proxyaddr from 'proxy-addr'
import { createSecureContext } from 'node:tls'
import type { ProxyHeader } from './client-addresses.js'
import { MIN_TOKEN_LENGTH, MiB, minute, second } from './constants.js'
import { readPolicy } from './policy.js'

/** What an option of each kind holds; `limit-*` kinds take 0 for "no limit". */
interface KindValues {
  port: number
  ms: number
  count: number
  bytes: number
  'limit-ms': number
  'limit-bytes': number
  'limit-count': number
  string: string
  'redis-url': string
  /** A file path or the PEM itself; `start()` also takes the bytes. */
  'tls-file': string | Buffer
  boolean: boolean
  /** Hops to trust (a count), or the proxies' addresses and CIDRs, as Express's `trust proxy` takes them. */
  'proxy-trust': number | string
  /** Where trusted proxies put the client's address. */
  'proxy-header': ProxyHeader
  /** Origins (`scheme://host[:port]`); the command and variable take them comma-separated. */
  origins: readonly string[]
  /** A secret: at least `MIN_TOKEN_LENGTH` visible ASCII characters; never written in a message. */
  token: string
}

export type OptionKind = keyof KindValues
type IntegerKind = 'port' | 'ms' | 'count' | 'bytes' | 'limit-ms' | 'limit-bytes' | 'limit-count'

/** One entry of the table, as code that reads any entry sees it. */
interface Declared<K extends OptionKind> {
  /** Its name in `start()` and in `Config`. */
  key: string
  /** Command-line flag, without the dashes. */
  flag: string
  alias?: string
  env: string
  kind: K
  /** Default of `start()`, and of the command unless `cli` is given; without one the option is unset unless given. */
  library?: KindValues[K]
  /** Default of the `rendezvous` command, where it differs from the library's. */
  cli?: KindValues[K]
  /** Bounds narrower than the kind's, for a whole-number option. */
  min?: K extends IntegerKind ? number : never
  max?: K extends IntegerKind ? number : never
  /** The flag and variable say "disable": set means the option is false. */
  negated?: K extends 'boolean' ? boolean : never
  /** Read into `Config.tls` with the other TLS options, not a field of its own. */
  tls?: true
  /** An option of the command only, not of `start()` (`--workers`). */
  command?: true
  /** Help text; the command adds the default and the variable. */
  describe: string
}

export type OptionSpec = { [K in OptionKind]: Declared<K> }[OptionKind]

/**
 * Every option, once: adding one is a line here plus its use, and the types
 * `Options`, `Config` and `Defaults` follow. The order is that of `--help`.
 */
const TABLE = [
  // 13579 was the old library's port, 9090 the old command's
  { key: 'port', flag: 'port', alias: 'p', env: 'PORT', kind: 'port', library: 13579, cli: 9090, describe: 'TCP port to listen on (0 picks a free one)' },
  { key: 'host', flag: 'host', alias: 'h', env: 'HOST', kind: 'string', library: '0.0.0.0', describe: 'interface to listen on' },
  { key: 'key', flag: 'key', env: 'KEY', kind: 'tls-file', tls: true, describe: 'TLS private key file (PEM), with --cert' },
  { key: 'cert', flag: 'cert', env: 'CERT', kind: 'tls-file', tls: true, describe: 'TLS certificate file (PEM), with --key' },
  { key: 'pfx', flag: 'pfx', env: 'PFX', kind: 'tls-file', tls: true, describe: 'TLS PKCS#12 file, instead of --key and --cert' },
  { key: 'passphrase', flag: 'passphrase', env: 'PFX_PASSPHRASE', kind: 'string', tls: true, describe: 'passphrase of --pfx (or of an encrypted --key)' },
  { key: 'cryptoChallenge', flag: 'disableCryptoChallenge', env: 'DISABLE_CRYPTO_CHALLENGE', kind: 'boolean', negated: true, library: true, describe: 'let peers join without proving they own their peer id' },
  { key: 'peerPolicy', flag: 'peerPolicy', env: 'PEER_POLICY', kind: 'string', describe: 'peer-id policy file: allow and deny lists (JSON or text), read again on SIGHUP and when it changes' },
  // the old library accepted any address, the old command only websocket-star ones
  { key: 'strictMultiaddr', flag: 'disableStrictMultiaddr', env: 'DISABLE_STRICT_MULTIADDR', kind: 'boolean', negated: true, library: false, cli: true, describe: 'accept addresses that are not websocket-star (or webrtc-star) multiaddrs' },
  { key: 'webrtcStar', flag: 'disableWebrtcStar', env: 'DISABLE_WEBRTC_STAR', kind: 'boolean', negated: true, library: true, describe: 'do not serve webrtc-star signalling (its joins, offers and /socket.io-next)' },
  { key: 'metrics', flag: 'disableMetrics', env: 'DISABLE_METRICS', kind: 'boolean', negated: true, library: false, cli: true, describe: 'do not serve Prometheus metrics on /metrics' },
  { key: 'refreshPeerListIntervalMS', flag: 'refreshPeerListIntervalMS', env: 'REFRESH_PEER_LIST_INTERVAL_MS', kind: 'ms', library: 10 * second, describe: 'how often every joined address is announced again, in ms' },
  { key: 'challengeTimeoutMS', flag: 'challengeTimeoutMS', env: 'CHALLENGE_TIMEOUT_MS', kind: 'ms', library: 1 * minute, describe: 'how long a crypto challenge waits for its signature, in ms' },
  { key: 'maxPendingChallenges', flag: 'maxPendingChallenges', env: 'MAX_PENDING_CHALLENGES', kind: 'count', library: 16, describe: 'unanswered crypto challenges one connection may have' },
  { key: 'dialTimeoutMS', flag: 'dialTimeoutMS', env: 'DIAL_TIMEOUT_MS', kind: 'ms', library: 30 * second, describe: 'how long a dial waits for the listener to answer and both streams to be accepted, in ms' },
  { key: 'relayHighWaterBytes', flag: 'relayHighWaterBytes', env: 'RELAY_HIGH_WATER_BYTES', kind: 'bytes', library: 1 * MiB, describe: 'bytes waiting for a receiver above which its senders are paused (resumed below a quarter of it)' },
  { key: 'maxStreamsPerConnection', flag: 'maxStreamsPerConnection', env: 'MAX_STREAMS_PER_CONNECTION', kind: 'count', library: 256, describe: 'relayed streams one connection may take part in at once (a dial makes two)' },
  { key: 'maxRelayBytes', flag: 'maxRelayBytes', env: 'MAX_RELAY_BYTES', kind: 'limit-bytes', library: 0, describe: 'bytes one dial may relay, both ways together (0: no limit)' },
  { key: 'maxRelayDurationMS', flag: 'maxRelayDurationMS', env: 'MAX_RELAY_DURATION_MS', kind: 'limit-ms', library: 0, describe: 'how long one dial may stay open, in ms (0: no limit)' },
  // a refresh round costs peers × (peers − 1) deliveries; measured on a 2-core machine (README, Performance)
  { key: 'maxAnnouncementsPerSecond', flag: 'maxAnnouncementsPerSecond', env: 'MAX_ANNOUNCEMENTS_PER_SECOND', kind: 'count', library: 600_000, describe: 'discovery deliveries per second at most; beyond it the refresh interval stretches' },
  { key: 'maxPeersInJoinReply', flag: 'maxPeersInJoinReply', env: 'MAX_PEERS_IN_JOIN_REPLY', kind: 'count', library: 1000, describe: 'addresses listed in a join\'s answer at most (a random sample when more are joined)' },
  // the real client holds one
  { key: 'maxAddressesPerConnection', flag: 'maxAddressesPerConnection', env: 'MAX_ADDRESSES_PER_CONNECTION', kind: 'count', library: 16, describe: 'addresses one connection may hold at once' },
  { key: 'maxPeers', flag: 'maxPeers', env: 'MAX_PEERS', kind: 'limit-count', library: 0, describe: 'joined addresses in all; beyond it joins get \'Server full\' (0: no limit)' },
  // no limit by default: peers share NAT addresses
  { key: 'maxConnectionsPerIP', flag: 'maxConnectionsPerIP', env: 'MAX_CONNECTIONS_PER_IP', kind: 'limit-count', library: 0, describe: 'open connections from one remote address (0: no limit)' },
  // a listen takes two joins
  { key: 'maxJoinsPerSecond', flag: 'maxJoinsPerSecond', env: 'MAX_JOINS_PER_SECOND', kind: 'count', library: 20, describe: 'ss-join requests per second per connection (bursts of twice as many)' },
  { key: 'maxDialsPerSecond', flag: 'maxDialsPerSecond', env: 'MAX_DIALS_PER_SECOND', kind: 'count', library: 50, describe: 'ss-dial requests per second per connection (bursts of twice as many)' },
  // a WebRTC connection takes an offer, an answer and a few trickled candidates each way
  { key: 'maxSignalsPerSecond', flag: 'maxSignalsPerSecond', env: 'MAX_SIGNALS_PER_SECOND', kind: 'count', library: 100, describe: 'webrtc-star ss-handshake messages per second per connection (bursts of twice as many)' },
  { key: 'joinTimeoutMS', flag: 'joinTimeoutMS', env: 'JOIN_TIMEOUT_MS', kind: 'limit-ms', library: 1 * minute, describe: 'how long a connection may stay without holding an address, in ms (0: forever)' },
  { key: 'maxUnsentBytes', flag: 'maxUnsentBytes', env: 'MAX_UNSENT_BYTES', kind: 'bytes', library: 8 * MiB, describe: 'output a peer may leave unread before it is disconnected' },
  // relayed chunks of 1 MiB must fit
  { key: 'maxMessageBytes', flag: 'maxMessageBytes', env: 'MAX_MESSAGE_BYTES', kind: 'bytes', library: 4 * MiB, describe: 'largest message (or polling request) a client may send' },
  { key: 'pingIntervalMS', flag: 'pingIntervalMS', env: 'PING_INTERVAL_MS', kind: 'ms', library: 25 * second, describe: 'heartbeat interval, in ms' },
  { key: 'pingTimeoutMS', flag: 'pingTimeoutMS', env: 'PING_TIMEOUT_MS', kind: 'ms', library: 20 * second, describe: 'a peer silent for the interval plus this is gone, in ms' },
  { key: 'shutdownGracePeriodMS', flag: 'shutdownGracePeriodMS', env: 'SHUTDOWN_GRACE_PERIOD_MS', kind: 'limit-ms', library: 10 * second, describe: 'on SIGTERM/SIGINT, how long relayed streams may go on before they are ended, in ms' },
  // no default: trust no proxy, every address is the TCP peer's
  { key: 'trustProxy', flag: 'trustProxy', env: 'TRUST_PROXY', kind: 'proxy-trust', describe: 'proxies whose X-Forwarded-For is believed: a hop count, or addresses/CIDRs (comma-separated; loopback, linklocal, uniquelocal)' },
  // no default: any origin, as the old server
  { key: 'proxyHeader', flag: 'proxyHeader', env: 'PROXY_HEADER', kind: 'proxy-header', library: 'x-forwarded-for', describe: 'the header trusted proxies forward the client address in: x-forwarded-for or forwarded (RFC 7239)' },
  { key: 'allowedOrigins', flag: 'allowedOrigins', env: 'ALLOWED_ORIGINS', kind: 'origins', describe: 'origins browsers may connect from (comma-separated, e.g. https://app.example); others are refused' },
  { key: 'requireOrigin', flag: 'requireOrigin', env: 'REQUIRE_ORIGIN', kind: 'boolean', library: false, describe: 'refuse connections without an Origin header (Node.js peers send none)' },
  { key: 'adminToken', flag: 'adminToken', env: 'ADMIN_TOKEN', kind: 'token', describe: 'bearer token of the operator\'s view (/admin/peers); without it the view is off' },
  { key: 'redis', flag: 'redis', env: 'REDIS_URL', kind: 'redis-url', describe: 'Redis URL (redis://host:port): run as one node of a cluster sharing peers through it' },
  { key: 'clusterNodeTimeoutMS', flag: 'clusterNodeTimeoutMS', env: 'CLUSTER_NODE_TIMEOUT_MS', kind: 'ms', library: 30 * second, describe: 'cluster mode: a node silent this long is dead and its peers are purged, in ms' },
  // the primary forks the workers itself (workers.ts): start() runs one process
  { key: 'workers', flag: 'workers', env: 'WORKERS', kind: 'count', command: true, describe: 'processes to run, sharing the port and clustered through --redis (default: one process)' }
] as const satisfies readonly OptionSpec[]

type Entry = typeof TABLE[number]
type StartEntry = Exclude<Entry, { command: true }>
type CommandEntry = Extract<Entry, { command: true }>
type DefaultedEntry = Extract<StartEntry, { library: unknown }>
type ValueOf<E extends Entry> = KindValues[E['kind']]
/** Flattens an intersection, so that the type reads as one object. */
type Simplify<T> = { [K in keyof T]: T[K] }

/** What `start()` accepts: every option of the table but those of the command only, all optional. */
export type Options = { [E in StartEntry as E['key']]?: ValueOf<E> }

/** A value for every option that has a default. */
export type Defaults = { [E in DefaultedEntry as E['key']]: ValueOf<E> }

export type TlsConfig =
  | { key: Buffer, cert: Buffer, passphrase?: string }
  | { pfx: Buffer, passphrase?: string }

/**
 * The files the TLS material was read from, for reading it again: a part given
 * inline (PEM text or bytes to `start()`) has no path and is kept as it is.
 */
export interface TlsFiles {
  key?: string
  cert?: string
  pfx?: string
}

/** Options after defaults and validation, what the modules read: the TLS options become `tls` (and `tlsFiles`). */
export type Config = Simplify<Defaults & { [E in Exclude<StartEntry, DefaultedEntry | { tls: true }> as E['key']]?: ValueOf<E> } & { tls?: TlsConfig, tlsFiles?: TlsFiles }>

/** The options of the command only, such as `--workers`. */
export type CommandOptions = { [E in CommandEntry as E['key']]?: ValueOf<E> }

/** The options of `start()`, in the order of `--help`. */
export const OPTION_SPECS: ReadonlyArray<OptionSpec & { key: keyof Options }> = TABLE.filter((spec): spec is StartEntry => !('command' in spec))

/** The options of the command only, which `start()` does not take. */
export const COMMAND_SPECS: ReadonlyArray<OptionSpec & { key: keyof CommandOptions }> = TABLE.filter((spec): spec is CommandEntry => 'command' in spec)

function defaultsOf (pick: (spec: OptionSpec) => unknown): Defaults {
  const defaults: Record<string, unknown> = {}
  for (const spec of OPTION_SPECS) {
    const value = pick(spec)
    if (value !== undefined) defaults[spec.key] = value
  }
  // the entries with a library default are the keys of Defaults, and `satisfies` checked each value against its kind
  return defaults as Defaults
}

/** Defaults of `start()`: those of the old library. */
export const LIBRARY_DEFAULTS: Defaults = defaultsOf((spec) => spec.library)

/** Defaults of the `rendezvous` command: those of the old command. */
export const CLI_DEFAULTS: Defaults = defaultsOf((spec) => spec.cli ?? spec.library)

/** A bad option value; `option` is how the user wrote its name. */
export class OptionError extends Error {
  constructor (readonly option: string, readonly problem: string) {
    super(`${option}: ${problem}`)
    this.name = 'OptionError'
  }
}

interface IntegerRange {
  /** What a value is, for messages. */
  noun: string
  min: number
  max: number
  /** 0 is taken too, meaning "no limit". */
  zeroIsNoLimit: boolean
  /** The message's words for the kind's own range. */
  range: string
}

/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1
const MS = { noun: 'a duration in milliseconds', min: 1, max: MAX_TIMER_MS }
const COUNT = { noun: 'a count', min: 1, max: Number.MAX_SAFE_INTEGER }
const BYTES = { noun: 'a size in bytes', min: 1, max: Number.MAX_SAFE_INTEGER }
const FROM_ONE = { zeroIsNoLimit: false, range: 'a whole number from 1' }
const NO_LIMIT = { zeroIsNoLimit: true, range: '0 for no limit' }

const INTEGER_KINDS: Record<IntegerKind, IntegerRange> = {
  port: { noun: 'a port number', min: 0, max: 65535, zeroIsNoLimit: false, range: '0 to 65535' },
  ms: { ...MS, ...FROM_ONE },
  count: { ...COUNT, ...FROM_ONE },
  bytes: { ...BYTES, ...FROM_ONE },
  'limit-ms': { ...MS, ...NO_LIMIT },
  'limit-bytes': { ...BYTES, ...NO_LIMIT },
  'limit-count': { ...COUNT, ...NO_LIMIT }
}

/** The whole numbers an option of `kind` takes: the kind's range, or the option's own `min` and `max`. */
export function integerBounds (kind: IntegerKind, own: { min?: number, max?: number } = {}): { min: number, max: number, zeroIsNoLimit: boolean, what: string } {
  const { noun, min, max, zeroIsNoLimit, range } = INTEGER_KINDS[kind]
  if (own.min === undefined && own.max === undefined) return { min: zeroIsNoLimit ? 0 : min, max, zeroIsNoLimit, what: `${noun} (${range})` }
  const lowest = own.min ?? min
  const highest = own.max ?? max
  const words = `a whole number from ${lowest} to ${highest}`
  return { min: lowest, max: highest, zeroIsNoLimit, what: `${noun} (${zeroIsNoLimit ? `0 for no limit, or ${words}` : words})` }
}

function parseInteger (raw: unknown, option: string, kind: IntegerKind, own: { min?: number, max?: number }): number {
  const { min, max, zeroIsNoLimit, what } = integerBounds(kind, own)
  const n = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isInteger(n) || ((n < min || n > max) && !(zeroIsNoLimit && n === 0))) {
    throw new OptionError(option, `${JSON.stringify(raw)} is not ${what}`)
  }
  return n
}

const TRUE_WORDS = new Set(['1', 'true', 'yes'])
const FALSE_WORDS = new Set(['0', 'false', 'no'])

/** The parts of an entry a value's check reads. */
interface Checked<K extends OptionKind> {
  kind: K
  min?: number
  max?: number
}

type Parsers = { [K in OptionKind]: (raw: unknown, option: string, spec: Checked<K>) => KindValues[K] }

const integer = (raw: unknown, option: string, spec: Checked<IntegerKind>): number => parseInteger(raw, option, spec.kind, spec)

const PARSERS: Parsers = {
  port: integer,
  ms: integer,
  count: integer,
  bytes: integer,
  'limit-ms': integer,
  'limit-bytes': integer,
  'limit-count': integer,
  string: (raw, option) => {
    if (typeof raw !== 'string' || raw === '') throw new OptionError(option, 'must be a non-empty string')
    return raw
  },
  'redis-url': (raw, option) => {
    if (typeof raw !== 'string' || !/^rediss?:\/\/[^/\s]+(\/\d*)?$/.test(raw.trim())) {
      throw new OptionError(option, `${JSON.stringify(raw)} is not a Redis URL (redis://[user:password@]host[:port][/db])`)
    }
    return raw.trim()
  },
  'tls-file': (raw, option) => {
    if (Buffer.isBuffer(raw)) return raw
    if (typeof raw !== 'string' || raw === '') throw new OptionError(option, 'must be a file path')
    return raw
  },
  boolean: (raw, option) => {
    if (typeof raw === 'boolean') return raw
    const word = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
    if (TRUE_WORDS.has(word)) return true
    if (FALSE_WORDS.has(word)) return false
    throw new OptionError(option, `${JSON.stringify(raw)} is not one of 1, true, yes, 0, false, no`)
  },
  'proxy-trust': (raw, option) => {
    const n = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw
    if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) return n
    const list = typeof n === 'string' ? n.split(',').map((s) => s.trim()).filter((s) => s !== '') : []
    const bad = `${JSON.stringify(raw)} is not a hop count or a comma-separated list of addresses, CIDRs, loopback, linklocal or uniquelocal`
    if (list.length === 0) throw new OptionError(option, bad)
    try {
      proxyaddr.compile(list)
    } catch {
      throw new OptionError(option, bad)
    }
    return list.join(',')
  },
  'proxy-header': (raw, option) => {
    const word = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
    if (word !== 'x-forwarded-for' && word !== 'forwarded') throw new OptionError(option, `${JSON.stringify(raw)} is not x-forwarded-for or forwarded`)
    return word
  },
  token: (raw, option) => {
    // the value is a secret: the message describes it and never quotes it
    if (typeof raw !== 'string' || raw.length < MIN_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(raw)) {
      throw new OptionError(option, `must be at least ${MIN_TOKEN_LENGTH} visible ASCII characters, without spaces`)
    }
    return raw
  },
  origins: (raw, option) => {
    const list = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw as unknown[] : undefined
    const origins = list?.map((o) => typeof o === 'string' ? o.trim() : o).filter((o) => o !== '')
    if (origins === undefined || origins.length === 0) throw new OptionError(option, `${JSON.stringify(raw)} is not a comma-separated list of origins`)
    for (const origin of origins) {
      if (typeof origin !== 'string' || !isOrigin(origin)) throw new OptionError(option, `${JSON.stringify(origin)} is not an origin (scheme://host[:port], e.g. https://app.example)`)
    }
    // a browser's Origin header is lower-case and carries no default port; URL writes origins that way
    return (origins as string[]).map((origin) => new URL(origin).origin)
  }
}

/** `scheme://host[:port]`, nothing after: what a browser sends as `Origin`. */
function isOrigin (text: string): boolean {
  try {
    const url = new URL(text)
    return url.origin !== 'null' && url.username === '' && url.pathname === '/' && url.search === '' && url.hash === ''
  } catch {
    return false
  }
}

/**
 * Converts a value as the user gave it (a string from the command line or the
 * environment, or a typed value from `start()`) to the option's type.
 * `option` is the name an error gives.
 */
export function parseOptionValue<K extends OptionKind> (spec: Checked<K>, raw: unknown, option: string): KindValues[K] {
  return PARSERS[spec.kind](raw, option, spec)
}

/**
 * The raw value of one option as the user gave it, with how they wrote its
 * name: the flag wins over the variable, and an empty variable counts as unset.
 */
function givenValue (argv: Record<string, unknown>, env: NodeJS.ProcessEnv, spec: OptionSpec): { raw: unknown, name: string } | undefined {
  if (argv[spec.flag] !== undefined) return { raw: argv[spec.flag], name: `--${spec.flag}` }
  const fromEnv = env[spec.env]
  if (fromEnv !== undefined && fromEnv !== '') return { raw: fromEnv, name: spec.env }
  return undefined
}

/** One option from the command line or the environment, as `start()` takes it; `names` learns how the user wrote it. */
function fromCommandLine (spec: OptionSpec, argv: Record<string, unknown>, env: NodeJS.ProcessEnv, names: Map<string, string>): KindValues[OptionKind] | undefined {
  const given = givenValue(argv, env, spec)
  if (given === undefined) return undefined
  const { raw, name } = given
  names.set(spec.key, name)
  switch (spec.kind) {
    // read files here, so that an error names the flag or variable as written
    case 'tls-file': {
      // read now, so that an unreadable file exits naming the flag; the path is
      // what start() gets, so that the certificates can be read again (SIGHUP)
      const value = parseOptionValue(spec, raw, name)
      readTlsFile(value, name)
      return value
    }
    case 'boolean': {
      const value = parseOptionValue(spec, raw, name)
      // `--disableMetrics` and `DISABLE_METRICS=1` both mean `metrics: false`
      return spec.negated === true ? !value : value
    }
    default: return parseOptionValue(spec, raw, name)
  }
}

/**
 * Sets one option of a set being built. Not checked against the key: the value
 * was parsed by the kind the table gives that key, which is the type the
 * derived types give it.
 */
function put<K extends string> (target: { [key in K]?: unknown }, key: K, value: unknown): void {
  target[key] = value
}

/**
 * Options from the command line (already parsed by yargs, keyed by flag) and
 * the environment: those of `start()`, and those of the command only. A flag
 * wins over its variable; an empty variable counts as unset. Names in errors,
 * and in `names` (keyed by option), are written as the user wrote them.
 */
export function optionsFromCommandLine (argv: Record<string, unknown>, env: NodeJS.ProcessEnv): { options: Options, command: CommandOptions, names: Map<string, string> } {
  const options: Options = {}
  const command: CommandOptions = {}
  /** How the user wrote each option given: `--port` or `PORT`. */
  const names = new Map<string, string>()
  for (const spec of OPTION_SPECS) {
    const value = fromCommandLine(spec, argv, env, names)
    if (value !== undefined) put(options, spec.key, value)
  }
  for (const spec of COMMAND_SPECS) {
    const value = fromCommandLine(spec, argv, env, names)
    if (value !== undefined) put(command, spec.key, value)
  }
  return { options, command, names }
}

/** A path, rather than the PEM itself or its bytes. */
function isPath (value: string | Buffer | undefined): value is string {
  return typeof value === 'string' && !value.includes('-----BEGIN ')
}

function readTlsFile (value: string | Buffer, option: string): Buffer {
  if (Buffer.isBuffer(value)) return value
  // a PEM given inline rather than as a path
  if (value.includes('-----BEGIN ')) return Buffer.from(value)
  try {
    return readFileSync(value)
  } catch (err) {
    throw new OptionError(option, `cannot read ${JSON.stringify(value)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
  }
}

function pairTls (options: Options): TlsConfig | undefined {
  const { key, cert, pfx, passphrase } = options
  if (pfx !== undefined) {
    if (key !== undefined || cert !== undefined) throw new OptionError('pfx', 'give either a PKCS#12 file or a key and a certificate, not both')
    return { pfx: readTlsFile(pfx, 'pfx'), ...(passphrase !== undefined ? { passphrase } : {}) }
  }
  if (key === undefined && cert === undefined) return undefined
  if (key === undefined) throw new OptionError('key', 'a certificate was given without its key')
  if (cert === undefined) throw new OptionError('cert', 'a key was given without its certificate')
  return { key: readTlsFile(key, 'key'), cert: readTlsFile(cert, 'cert'), ...(passphrase !== undefined ? { passphrase } : {}) }
}

/** Checks that node:tls accepts the key material now, rather than at the first connection. */
function resolveTls (options: Options): TlsConfig | undefined {
  const tls = pairTls(options)
  if (tls === undefined) return undefined
  try {
    createSecureContext(tls)
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''
    const blamed = /bad decrypt|mac verify|passphrase/i.test(reason) ? 'passphrase' : 'pfx' in tls ? 'pfx' : /certificate|x509/i.test(reason) ? 'cert' : 'key'
    throw new OptionError(blamed, `TLS rejected the ${'pfx' in tls ? 'PKCS#12 file' : 'key and certificate'}: ${reason}`)
  }
  return tls
}

/**
 * Checks every option given to `start()` and fills in the defaults.
 * Throws an `OptionError` naming the first bad option.
 */
export function resolveConfig (options: Options, defaults: Defaults = LIBRARY_DEFAULTS): Config {
  const merged: Options & Defaults = { ...defaults }
  for (const spec of OPTION_SPECS) {
    const value = options[spec.key]
    if (value === undefined) continue
    put(merged, spec.key, parseOptionValue(spec, value, spec.key))
  }
  const { key, cert, pfx, passphrase, ...rest } = merged
  const tls = resolveTls({ key, cert, pfx, passphrase })
  // read now so that a bad file stops the start naming the option; parts.ts reads it for good
  if (rest.peerPolicy !== undefined) {
    try {
      readPolicy(rest.peerPolicy)
    } catch (err) {
      throw new OptionError('peerPolicy', err instanceof Error ? err.message : String(err))
    }
  }
  if (tls === undefined) return rest
  const tlsFiles: TlsFiles = {}
  if (isPath(key)) tlsFiles.key = key
  if (isPath(cert)) tlsFiles.cert = cert
  if (isPath(pfx)) tlsFiles.pfx = pfx
  return { ...rest, tls, tlsFiles }
}
