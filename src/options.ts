import { readFileSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import * as C from './constants.js'

/** What `start()` accepts. Every field is optional; see `LIBRARY_DEFAULTS`. */
export interface Options {
  /** TCP port; 0 picks a free one. */
  port?: number
  host?: string
  /** TLS private key and certificate: a file path or the PEM itself. */
  key?: string | Buffer
  cert?: string | Buffer
  /** TLS PKCS#12 bundle: a file path or its bytes, with `passphrase`. */
  pfx?: string | Buffer
  passphrase?: string
  cryptoChallenge?: boolean
  strictMultiaddr?: boolean
  metrics?: boolean
  refreshPeerListIntervalMS?: number
  challengeTimeoutMS?: number
  maxPendingChallenges?: number
  dialTimeoutMS?: number
  relayHighWaterBytes?: number
  maxStreamsPerConnection?: number
  maxRelayBytes?: number
  maxRelayDurationMS?: number
  shutdownGracePeriodMS?: number
  maxAnnouncementsPerSecond?: number
  maxPeersInJoinReply?: number
  maxAddressesPerConnection?: number
  maxPeers?: number
  maxConnectionsPerIP?: number
  maxJoinsPerSecond?: number
  maxDialsPerSecond?: number
  joinTimeoutMS?: number
  maxUnsentBytes?: number
  maxMessageBytes?: number
  pingIntervalMS?: number
  pingTimeoutMS?: number
  /** Redis URL (`redis://host:port`): joins this server to a cluster. */
  redis?: string
  clusterNodeTimeoutMS?: number
}

export type TlsConfig =
  | { key: Buffer, cert: Buffer, passphrase?: string }
  | { pfx: Buffer, passphrase?: string }

/** Options after defaults and validation: what the modules read. */
export interface Config {
  port: number
  host: string
  tls?: TlsConfig
  cryptoChallenge: boolean
  strictMultiaddr: boolean
  metrics: boolean
  refreshPeerListIntervalMS: number
  challengeTimeoutMS: number
  maxPendingChallenges: number
  dialTimeoutMS: number
  relayHighWaterBytes: number
  maxStreamsPerConnection: number
  maxRelayBytes: number
  maxRelayDurationMS: number
  shutdownGracePeriodMS: number
  maxAnnouncementsPerSecond: number
  maxPeersInJoinReply: number
  maxAddressesPerConnection: number
  maxPeers: number
  maxConnectionsPerIP: number
  maxJoinsPerSecond: number
  maxDialsPerSecond: number
  joinTimeoutMS: number
  maxUnsentBytes: number
  maxMessageBytes: number
  pingIntervalMS: number
  pingTimeoutMS: number
  redis?: string
  clusterNodeTimeoutMS: number
}

/** `limit-*`: 0 means no limit. */
type Kind = 'port' | 'ms' | 'count' | 'bytes' | 'limit-ms' | 'limit-bytes' | 'limit-count' | 'string' | 'tls-file' | 'boolean' | 'redis-url'

/** One option, as `start()`, the command line and the environment name it. */
export interface OptionSpec {
  key: keyof Options
  /** Command-line flag, without the dashes. */
  flag: string
  alias?: string
  env: string
  kind: Kind
  /** The flag and variable say "disable": set means the option is false. */
  negated?: boolean
  describe: string
}

export const OPTION_SPECS: readonly OptionSpec[] = [
  { key: 'port', flag: 'port', alias: 'p', env: 'PORT', kind: 'port', describe: 'TCP port to listen on (0 picks a free one)' },
  { key: 'host', flag: 'host', alias: 'h', env: 'HOST', kind: 'string', describe: 'interface to listen on' },
  { key: 'key', flag: 'key', env: 'KEY', kind: 'tls-file', describe: 'TLS private key file (PEM), with --cert' },
  { key: 'cert', flag: 'cert', env: 'CERT', kind: 'tls-file', describe: 'TLS certificate file (PEM), with --key' },
  { key: 'pfx', flag: 'pfx', env: 'PFX', kind: 'tls-file', describe: 'TLS PKCS#12 file, instead of --key and --cert' },
  { key: 'passphrase', flag: 'passphrase', env: 'PFX_PASSPHRASE', kind: 'string', describe: 'passphrase of --pfx (or of an encrypted --key)' },
  { key: 'cryptoChallenge', flag: 'disableCryptoChallenge', env: 'DISABLE_CRYPTO_CHALLENGE', kind: 'boolean', negated: true, describe: 'let peers join without proving they own their peer id' },
  { key: 'strictMultiaddr', flag: 'disableStrictMultiaddr', env: 'DISABLE_STRICT_MULTIADDR', kind: 'boolean', negated: true, describe: 'accept addresses that are not websocket-star multiaddrs' },
  { key: 'metrics', flag: 'disableMetrics', env: 'DISABLE_METRICS', kind: 'boolean', negated: true, describe: 'do not serve Prometheus metrics on /metrics' },
  { key: 'refreshPeerListIntervalMS', flag: 'refreshPeerListIntervalMS', env: 'REFRESH_PEER_LIST_INTERVAL_MS', kind: 'ms', describe: 'how often every joined address is announced again, in ms' },
  { key: 'challengeTimeoutMS', flag: 'challengeTimeoutMS', env: 'CHALLENGE_TIMEOUT_MS', kind: 'ms', describe: 'how long a crypto challenge waits for its signature, in ms' },
  { key: 'maxPendingChallenges', flag: 'maxPendingChallenges', env: 'MAX_PENDING_CHALLENGES', kind: 'count', describe: 'unanswered crypto challenges one connection may have' },
  { key: 'dialTimeoutMS', flag: 'dialTimeoutMS', env: 'DIAL_TIMEOUT_MS', kind: 'ms', describe: 'how long a dial waits for the listener to answer and both streams to be accepted, in ms' },
  { key: 'relayHighWaterBytes', flag: 'relayHighWaterBytes', env: 'RELAY_HIGH_WATER_BYTES', kind: 'bytes', describe: 'bytes waiting for a receiver above which its senders are paused (resumed below a quarter of it)' },
  { key: 'maxStreamsPerConnection', flag: 'maxStreamsPerConnection', env: 'MAX_STREAMS_PER_CONNECTION', kind: 'count', describe: 'relayed streams one connection may take part in at once (a dial makes two)' },
  { key: 'maxRelayBytes', flag: 'maxRelayBytes', env: 'MAX_RELAY_BYTES', kind: 'limit-bytes', describe: 'bytes one dial may relay, both ways together (0: no limit)' },
  { key: 'maxRelayDurationMS', flag: 'maxRelayDurationMS', env: 'MAX_RELAY_DURATION_MS', kind: 'limit-ms', describe: 'how long one dial may stay open, in ms (0: no limit)' },
  { key: 'maxAnnouncementsPerSecond', flag: 'maxAnnouncementsPerSecond', env: 'MAX_ANNOUNCEMENTS_PER_SECOND', kind: 'count', describe: 'discovery deliveries per second at most; beyond it the refresh interval stretches' },
  { key: 'maxPeersInJoinReply', flag: 'maxPeersInJoinReply', env: 'MAX_PEERS_IN_JOIN_REPLY', kind: 'count', describe: 'addresses listed in a join\'s answer at most (a random sample when more are joined)' },
  { key: 'maxAddressesPerConnection', flag: 'maxAddressesPerConnection', env: 'MAX_ADDRESSES_PER_CONNECTION', kind: 'count', describe: 'addresses one connection may hold at once' },
  { key: 'maxPeers', flag: 'maxPeers', env: 'MAX_PEERS', kind: 'limit-count', describe: 'joined addresses in all; beyond it joins get \'Server full\' (0: no limit)' },
  { key: 'maxConnectionsPerIP', flag: 'maxConnectionsPerIP', env: 'MAX_CONNECTIONS_PER_IP', kind: 'limit-count', describe: 'open connections from one remote address (0: no limit)' },
  { key: 'maxJoinsPerSecond', flag: 'maxJoinsPerSecond', env: 'MAX_JOINS_PER_SECOND', kind: 'count', describe: 'ss-join requests per second per connection (bursts of twice as many)' },
  { key: 'maxDialsPerSecond', flag: 'maxDialsPerSecond', env: 'MAX_DIALS_PER_SECOND', kind: 'count', describe: 'ss-dial requests per second per connection (bursts of twice as many)' },
  { key: 'joinTimeoutMS', flag: 'joinTimeoutMS', env: 'JOIN_TIMEOUT_MS', kind: 'limit-ms', describe: 'how long a connection may stay without holding an address, in ms (0: forever)' },
  { key: 'maxUnsentBytes', flag: 'maxUnsentBytes', env: 'MAX_UNSENT_BYTES', kind: 'bytes', describe: 'output a peer may leave unread before it is disconnected' },
  { key: 'maxMessageBytes', flag: 'maxMessageBytes', env: 'MAX_MESSAGE_BYTES', kind: 'bytes', describe: 'largest message (or polling request) a client may send' },
  { key: 'pingIntervalMS', flag: 'pingIntervalMS', env: 'PING_INTERVAL_MS', kind: 'ms', describe: 'heartbeat interval, in ms' },
  { key: 'pingTimeoutMS', flag: 'pingTimeoutMS', env: 'PING_TIMEOUT_MS', kind: 'ms', describe: 'a peer silent for the interval plus this is gone, in ms' },
  { key: 'shutdownGracePeriodMS', flag: 'shutdownGracePeriodMS', env: 'SHUTDOWN_GRACE_PERIOD_MS', kind: 'limit-ms', describe: 'on SIGTERM/SIGINT, how long relayed streams may go on before they are ended, in ms' },
  { key: 'redis', flag: 'redis', env: 'REDIS_URL', kind: 'redis-url', describe: 'Redis URL (redis://host:port): run as one node of a cluster sharing peers through it' },
  { key: 'clusterNodeTimeoutMS', flag: 'clusterNodeTimeoutMS', env: 'CLUSTER_NODE_TIMEOUT_MS', kind: 'ms', describe: 'cluster mode: a node silent this long is dead and its peers are purged, in ms' }
]

/** A value for every option that has a default. */
export type Defaults = Omit<Config, 'tls' | 'redis'>

/** Defaults of `start()`: those of the old library. */
export const LIBRARY_DEFAULTS: Defaults = {
  port: C.LIBRARY_PORT,
  host: C.HOST,
  cryptoChallenge: true,
  strictMultiaddr: false,
  metrics: false,
  refreshPeerListIntervalMS: C.REFRESH_PEER_LIST_INTERVAL_MS,
  challengeTimeoutMS: C.CHALLENGE_TTL_MS,
  maxPendingChallenges: C.MAX_PENDING_CHALLENGES_PER_CONNECTION,
  dialTimeoutMS: C.DIAL_TIMEOUT_MS,
  relayHighWaterBytes: C.RELAY_HIGH_WATER_BYTES,
  maxStreamsPerConnection: C.MAX_STREAMS_PER_CONNECTION,
  maxRelayBytes: C.MAX_RELAY_BYTES,
  maxRelayDurationMS: C.MAX_RELAY_DURATION_MS,
  shutdownGracePeriodMS: C.SHUTDOWN_GRACE_PERIOD_MS,
  maxAnnouncementsPerSecond: C.MAX_ANNOUNCEMENTS_PER_SECOND,
  maxPeersInJoinReply: C.MAX_PEERS_IN_JOIN_REPLY,
  maxAddressesPerConnection: C.MAX_ADDRESSES_PER_CONNECTION,
  maxPeers: C.MAX_PEERS,
  maxConnectionsPerIP: C.MAX_CONNECTIONS_PER_IP,
  maxJoinsPerSecond: C.MAX_JOINS_PER_SECOND,
  maxDialsPerSecond: C.MAX_DIALS_PER_SECOND,
  joinTimeoutMS: C.JOIN_TIMEOUT_MS,
  maxUnsentBytes: C.MAX_UNSENT_BYTES,
  maxMessageBytes: C.MAX_MESSAGE_BYTES,
  pingIntervalMS: C.PING_INTERVAL_MS,
  pingTimeoutMS: C.PING_TIMEOUT_MS,
  clusterNodeTimeoutMS: C.CLUSTER_NODE_TIMEOUT_MS
}

/** Defaults of the `rendezvous` command: those of the old command. */
export const CLI_DEFAULTS: Defaults = {
  ...LIBRARY_DEFAULTS,
  port: C.CLI_PORT,
  strictMultiaddr: true,
  metrics: true
}

/** A bad option value; `option` is how the user wrote its name. */
export class OptionError extends Error {
  constructor (readonly option: string, readonly problem: string) {
    super(`${option}: ${problem}`)
    this.name = 'OptionError'
  }
}

/** Range and description of each whole-number kind; `limit-*` kinds take 0 for "no limit". */
const INTEGER_KINDS: Partial<Record<Kind, [min: number, max: number, what: string]>> = {
  port: [0, 65535, 'a port number (0 to 65535)'],
  ms: [1, 2 ** 31 - 1, 'a duration in milliseconds (a whole number from 1)'],
  count: [1, Number.MAX_SAFE_INTEGER, 'a count (a whole number from 1)'],
  bytes: [1, Number.MAX_SAFE_INTEGER, 'a size in bytes (a whole number from 1)'],
  'limit-ms': [0, 2 ** 31 - 1, 'a duration in milliseconds (0 for no limit)'],
  'limit-bytes': [0, Number.MAX_SAFE_INTEGER, 'a size in bytes (0 for no limit)'],
  'limit-count': [0, Number.MAX_SAFE_INTEGER, 'a count (0 for no limit)']
}

const TRUE_WORDS = new Set(['1', 'true', 'yes'])
const FALSE_WORDS = new Set(['0', 'false', 'no'])

function parseInteger (raw: unknown, option: string, min: number, max: number, what: string): number {
  const n = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new OptionError(option, `${JSON.stringify(raw)} is not ${what}`)
  }
  return n
}

/**
 * Converts a value as the user gave it (a string from the command line or the
 * environment, or a typed value from `start()`) to the option's type.
 */
export function parseOptionValue (spec: OptionSpec, raw: unknown, option: string): unknown {
  const integer = INTEGER_KINDS[spec.kind]
  if (integer !== undefined) return parseInteger(raw, option, ...integer)
  switch (spec.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw === '') throw new OptionError(option, 'must be a non-empty string')
      return raw
    case 'redis-url':
      if (typeof raw !== 'string' || !/^rediss?:\/\/[^/\s]+(\/\d*)?$/.test(raw.trim())) {
        throw new OptionError(option, `${JSON.stringify(raw)} is not a Redis URL (redis://[user:password@]host[:port][/db])`)
      }
      return raw.trim()
    case 'tls-file':
      if (Buffer.isBuffer(raw)) return raw
      if (typeof raw !== 'string' || raw === '') throw new OptionError(option, 'must be a file path')
      return raw
    case 'boolean': {
      if (typeof raw === 'boolean') return raw
      const word = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
      if (TRUE_WORDS.has(word)) return true
      if (FALSE_WORDS.has(word)) return false
      throw new OptionError(option, `${JSON.stringify(raw)} is not one of 1, true, yes, 0, false, no`)
    }
  }
}

/**
 * The raw value of one option as the user gave it, with how they wrote its
 * name: the flag wins over the variable, and an empty variable counts as unset.
 */
export function givenValue (argv: Record<string, unknown>, env: NodeJS.ProcessEnv, flag: string, variable: string): { raw: unknown, name: string } | undefined {
  if (argv[flag] !== undefined) return { raw: argv[flag], name: `--${flag}` }
  const fromEnv = env[variable]
  if (fromEnv !== undefined && fromEnv !== '') return { raw: fromEnv, name: variable }
  return undefined
}

/**
 * Options from the command line (already parsed by yargs, keyed by flag) and
 * the environment. A flag wins over its variable; an empty variable counts as
 * unset. Names in errors are written as the user wrote them.
 */
export function optionsFromCommandLine (argv: Record<string, unknown>, env: NodeJS.ProcessEnv): { options: Options, names: Map<string, string> } {
  const options: Record<string, unknown> = {}
  /** How the user wrote each option given: `--port` or `PORT`. */
  const names = new Map<string, string>()
  for (const spec of OPTION_SPECS) {
    const given = givenValue(argv, env, spec.flag, spec.env)
    if (given === undefined) continue
    const { name } = given
    let value = parseOptionValue(spec, given.raw, name)
    // read files here, so that an error names the flag or variable as written
    if (spec.kind === 'tls-file') value = readTlsFile(value as string, name)
    // `--disableMetrics` and `DISABLE_METRICS=1` both mean `metrics: false`
    options[spec.key] = spec.negated === true ? !(value as boolean) : value
    names.set(spec.key, name)
  }
  return { options: options as Options, names }
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
  const merged: Record<string, unknown> = { ...defaults }
  for (const spec of OPTION_SPECS) {
    const value = options[spec.key]
    if (value === undefined) continue
    merged[spec.key] = parseOptionValue(spec, value, spec.key)
  }
  const m = merged as unknown as Options & Defaults
  const tls = resolveTls(m)
  const { key, cert, pfx, passphrase, ...rest } = m
  return { ...rest, ...(tls !== undefined ? { tls } : {}) }
}
