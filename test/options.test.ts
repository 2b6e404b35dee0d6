/**
 * Option parsing, without a server: each kind's values and messages, where a
 * value comes from (flag, variable, `start()`), the defaults of the library
 * and of the command, and the table every option is declared in.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  CLI_DEFAULTS, COMMAND_SPECS, LIBRARY_DEFAULTS, OPTION_SPECS, OptionError, integerBounds, optionsFromCommandLine, parseOptionValue, resolveConfig,
  type CommandOptions, type Config, type Defaults, type OptionKind, type Options, type TlsConfig, type TlsFiles
} from '../src/options.js'

/** True when A and B are the same type, not merely assignable both ways. */
// the usual trick: T only defers the comparison (the probe parameter gives it a second use, which changes nothing)
type Equal<A, B> = (<T>(probe: T) => T extends A ? 1 : 2) extends (<T>(probe: T) => T extends B ? 1 : 2) ? true : false

/** `Config` as modules read it: every field as it was declared by hand before the table. */
interface ExpectedConfig {
  port: number
  host: string
  tls?: TlsConfig
  tlsFiles?: TlsFiles
  cryptoChallenge: boolean
  peerPolicy?: string
  strictMultiaddr: boolean
  webrtcStar: boolean
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
  maxSignalsPerSecond: number
  joinTimeoutMS: number
  maxUnsentBytes: number
  maxMessageBytes: number
  pingIntervalMS: number
  pingTimeoutMS: number
  trustProxy?: number | string
  proxyHeader: 'x-forwarded-for' | 'forwarded'
  allowedOrigins?: readonly string[]
  requireOrigin: boolean
  adminToken?: string
  redis?: string
  clusterNodeTimeoutMS: number
}
type ExpectedOptions = Partial<Omit<ExpectedConfig, 'tls' | 'tlsFiles'>> & {
  key?: string | Buffer
  cert?: string | Buffer
  pfx?: string | Buffer
  passphrase?: string
}
type Flat<T> = { [K in keyof T]: T[K] }

type Holds<T extends true> = T
/** Checked by tsc: a derived type that drifts from these is a compile error. */
export type DerivedTypes = [
  Holds<Equal<Config, ExpectedConfig>>,
  Holds<Equal<Options, Flat<ExpectedOptions>>>,
  Holds<Equal<Defaults, Omit<ExpectedConfig, 'tls' | 'tlsFiles' | 'redis' | 'peerPolicy' | 'trustProxy' | 'allowedOrigins' | 'adminToken'>>>,
  Holds<Equal<CommandOptions, { workers?: number }>>
]

/** Asserts that `fn` throws an OptionError with exactly `message`. */
function refuses (fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OptionError, `an OptionError, not ${String(err)}`)
    assert.equal(err.message, message)
    return true
  })
}

const parse = (kind: OptionKind, raw: unknown, own: { min?: number, max?: number } = {}): unknown => parseOptionValue({ kind, ...own }, raw, 'x')

describe('each kind of option', () => {
  it('a port takes 0 to 65535, from a string or a number', () => {
    assert.equal(parse('port', '0'), 0)
    assert.equal(parse('port', '65535'), 65535)
    assert.equal(parse('port', ' 8080 '), 8080)
    assert.equal(parse('port', 443), 443)
    for (const bad of ['65536', '-1', '1.5', 'abc', '', '0x50']) refuses(() => parse('port', bad), `x: "${bad}" is not a port number (0 to 65535)`)
    refuses(() => parse('port', 80.5), 'x: 80.5 is not a port number (0 to 65535)')
    refuses(() => parse('port', true), 'x: true is not a port number (0 to 65535)')
  })

  it('a duration in ms takes 1 to the longest timer', () => {
    assert.equal(parse('ms', '1'), 1)
    assert.equal(parse('ms', String(2 ** 31 - 1)), 2 ** 31 - 1)
    for (const bad of ['0', String(2 ** 31), '-5', '2.5', '1e3']) refuses(() => parse('ms', bad), `x: "${bad}" is not a duration in milliseconds (a whole number from 1)`)
  })

  it('a count and a size take a whole number from 1', () => {
    assert.equal(parse('count', '1'), 1)
    assert.equal(parse('bytes', String(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER)
    refuses(() => parse('count', '0'), 'x: "0" is not a count (a whole number from 1)')
    refuses(() => parse('bytes', '0'), 'x: "0" is not a size in bytes (a whole number from 1)')
    refuses(() => parse('bytes', Number.MAX_SAFE_INTEGER + 1), `x: ${Number.MAX_SAFE_INTEGER + 1} is not a size in bytes (a whole number from 1)`)
  })

  it('a limit takes 0 for no limit', () => {
    assert.equal(parse('limit-ms', '0'), 0)
    assert.equal(parse('limit-bytes', '0'), 0)
    assert.equal(parse('limit-count', 0), 0)
    assert.equal(parse('limit-ms', String(2 ** 31 - 1)), 2 ** 31 - 1)
    refuses(() => parse('limit-ms', String(2 ** 31)), `x: "${2 ** 31}" is not a duration in milliseconds (0 for no limit)`)
    refuses(() => parse('limit-bytes', '-1'), 'x: "-1" is not a size in bytes (0 for no limit)')
    refuses(() => parse('limit-count', 'none'), 'x: "none" is not a count (0 for no limit)')
  })

  it('an option\'s own min and max narrow its kind\'s, and the message says so', () => {
    assert.equal(parse('ms', '100', { min: 100, max: 1000 }), 100)
    assert.equal(parse('ms', '1000', { min: 100, max: 1000 }), 1000)
    refuses(() => parse('ms', '99', { min: 100, max: 1000 }), 'x: "99" is not a duration in milliseconds (a whole number from 100 to 1000)')
    refuses(() => parse('ms', '1001', { min: 100, max: 1000 }), 'x: "1001" is not a duration in milliseconds (a whole number from 100 to 1000)')
    // a limit still takes 0, and the bound holds for every other value
    assert.equal(parse('limit-count', '0', { min: 10 }), 0)
    refuses(() => parse('limit-count', '5', { min: 10 }), `x: "5" is not a count (0 for no limit, or a whole number from 10 to ${Number.MAX_SAFE_INTEGER})`)
    assert.deepEqual(integerBounds('port'), { min: 0, max: 65535, zeroIsNoLimit: false, what: 'a port number (0 to 65535)' })
    assert.deepEqual(integerBounds('limit-ms'), { min: 0, max: 2 ** 31 - 1, zeroIsNoLimit: true, what: 'a duration in milliseconds (0 for no limit)' })
  })

  it('a string must not be empty', () => {
    assert.equal(parse('string', '127.0.0.1'), '127.0.0.1')
    refuses(() => parse('string', ''), 'x: must be a non-empty string')
    refuses(() => parse('string', 5), 'x: must be a non-empty string')
  })

  it('a Redis URL is redis:// or rediss://, trimmed', () => {
    assert.equal(parse('redis-url', 'redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379')
    assert.equal(parse('redis-url', ' rediss://user:pw@host/2 '), 'rediss://user:pw@host/2')
    for (const bad of ['http://host', 'redis://', 'redis://host/db', 'host:6379']) {
      refuses(() => parse('redis-url', bad), `x: "${bad}" is not a Redis URL (redis://[user:password@]host[:port][/db])`)
    }
  })

  it('the proxies to trust are a hop count, or addresses, CIDRs and names, comma-separated', () => {
    assert.equal(parse('proxy-trust', '2'), 2)
    assert.equal(parse('proxy-trust', 1), 1)
    assert.equal(parse('proxy-trust', ' loopback, 10.0.0.0/8 ,::1'), 'loopback,10.0.0.0/8,::1')
    assert.equal(parse('proxy-trust', '192.168.1.0/255.255.255.0'), '192.168.1.0/255.255.255.0')
    for (const bad of ['', 'nginx', '10.0.0.0/33', '1.2.3', -1, 1.5]) {
      refuses(() => parse('proxy-trust', bad), `x: ${JSON.stringify(bad)} is not a hop count or a comma-separated list of addresses, CIDRs, loopback, linklocal or uniquelocal`)
    }
  })

  it('a proxy header is x-forwarded-for or forwarded, in any case', () => {
    assert.equal(parse('proxy-header', ' Forwarded '), 'forwarded')
    assert.equal(parse('proxy-header', 'X-Forwarded-For'), 'x-forwarded-for')
    for (const bad of ['x-real-ip', '', 1]) refuses(() => parse('proxy-header', bad), `x: ${JSON.stringify(bad)} is not x-forwarded-for or forwarded`)
  })

  it('a token is 16 or more visible ASCII characters, and a refusal never quotes it', () => {
    assert.equal(parse('token', 'abcdefghijklmnop'), 'abcdefghijklmnop')
    for (const bad of ['short-secret-15', 'sixteen chars ok', 'tab\tin-the-middle!', '', 42]) {
      refuses(() => parse('token', bad), 'x: must be at least 16 visible ASCII characters, without spaces')
    }
  })

  it('origins are scheme://host[:port], comma-separated or a list, written as browsers send them', () => {
    assert.deepEqual(parse('origins', 'https://App.example, http://127.0.0.1:8080/'), ['https://app.example', 'http://127.0.0.1:8080'])
    assert.deepEqual(parse('origins', ['https://a.example:443']), ['https://a.example'])
    refuses(() => parse('origins', ' , '), 'x: " , " is not a comma-separated list of origins')
    for (const bad of ['app.example', 'https://a.example/path', 'https://a.example?x=1']) {
      refuses(() => parse('origins', bad), `x: ${JSON.stringify(bad)} is not an origin (scheme://host[:port], e.g. https://app.example)`)
    }
  })

  it('a TLS file is a path, a PEM, or bytes', () => {
    const bytes = Buffer.from('key')
    assert.equal(parse('tls-file', bytes), bytes)
    assert.equal(parse('tls-file', '/etc/key.pem'), '/etc/key.pem')
    refuses(() => parse('tls-file', ''), 'x: must be a file path')
    refuses(() => parse('tls-file', 42), 'x: must be a file path')
  })

  it('a boolean takes 1/true/yes and 0/false/no in any case, or a boolean', () => {
    for (const word of ['1', 'true', 'yes', 'YES', ' True ']) assert.equal(parse('boolean', word), true, word)
    for (const word of ['0', 'false', 'no', 'NO']) assert.equal(parse('boolean', word), false, word)
    assert.equal(parse('boolean', true), true)
    assert.equal(parse('boolean', false), false)
    refuses(() => parse('boolean', 'maybe'), 'x: "maybe" is not one of 1, true, yes, 0, false, no')
    refuses(() => parse('boolean', ''), 'x: "" is not one of 1, true, yes, 0, false, no')
    refuses(() => parse('boolean', 1), 'x: 1 is not one of 1, true, yes, 0, false, no')
  })
})

describe('the command line and the environment', () => {
  it('a flag wins over its variable, and errors name what was used', () => {
    const { options, names } = optionsFromCommandLine({ port: '1' }, { PORT: 'abc', HOST: '127.0.0.2' })
    assert.deepEqual(options, { port: 1, host: '127.0.0.2' })
    assert.equal(names.get('port'), '--port')
    assert.equal(names.get('host'), 'HOST')
    refuses(() => optionsFromCommandLine({ port: 'abc' }, {}), '--port: "abc" is not a port number (0 to 65535)')
    refuses(() => optionsFromCommandLine({}, { PORT: 'abc' }), 'PORT: "abc" is not a port number (0 to 65535)')
    refuses(() => optionsFromCommandLine({}, { MAX_RELAY_DURATION_MS: '1.5' }), 'MAX_RELAY_DURATION_MS: "1.5" is not a duration in milliseconds (0 for no limit)')
  })

  it('an empty variable counts as unset, an empty flag does not', () => {
    const { options, names } = optionsFromCommandLine({}, { PORT: '', DISABLE_METRICS: '', REDIS_URL: '', WORKERS: '' })
    assert.deepEqual(options, {})
    assert.equal(names.size, 0)
    refuses(() => optionsFromCommandLine({ host: '' }, {}), '--host: must be a non-empty string')
    refuses(() => optionsFromCommandLine({ workers: '' }, {}), '--workers: "" is not a count (a whole number from 1)')
  })

  it('a negated flag or variable sets its option to false', () => {
    assert.deepEqual(optionsFromCommandLine({ disableMetrics: true }, {}).options, { metrics: false })
    assert.deepEqual(optionsFromCommandLine({ disableMetrics: 'no' }, {}).options, { metrics: true })
    assert.deepEqual(optionsFromCommandLine({}, { DISABLE_METRICS: '1' }).options, { metrics: false })
    assert.deepEqual(optionsFromCommandLine({}, { DISABLE_METRICS: 'false' }).options, { metrics: true })
    assert.deepEqual(optionsFromCommandLine({ disableCryptoChallenge: 'yes' }, { DISABLE_STRICT_MULTIADDR: 'YES' }).options, { cryptoChallenge: false, strictMultiaddr: false })
    refuses(() => optionsFromCommandLine({}, { DISABLE_METRICS: 'maybe' }), 'DISABLE_METRICS: "maybe" is not one of 1, true, yes, 0, false, no')
    const config = resolveConfig(optionsFromCommandLine({}, { DISABLE_METRICS: '1' }).options, CLI_DEFAULTS)
    assert.equal(config.metrics, false)
  })

  it('--workers is an option of the command, not of start()', () => {
    const { options, command, names } = optionsFromCommandLine({ workers: '3' }, { REDIS_URL: 'redis://localhost' })
    assert.deepEqual(options, { redis: 'redis://localhost' })
    assert.deepEqual(command, { workers: 3 })
    assert.equal(names.get('workers'), '--workers')
    assert.deepEqual(optionsFromCommandLine({}, { WORKERS: '2' }).command, { workers: 2 })
    refuses(() => optionsFromCommandLine({}, { WORKERS: '-1' }), 'WORKERS: "-1" is not a count (a whole number from 1)')
    assert.ok(!OPTION_SPECS.some((spec) => spec.flag === 'workers'))
  })

  it('TLS files are checked when given and passed on as paths (read again on SIGHUP), and a missing one is named as written', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n'
    assert.equal(optionsFromCommandLine({ key: pem }, {}).options.key, pem)
    const readable = fileURLToPath(import.meta.url)
    assert.equal(optionsFromCommandLine({ cert: readable }, {}).options.cert, readable)
    refuses(() => optionsFromCommandLine({ cert: '/missing/cert.pem' }, {}), '--cert: cannot read "/missing/cert.pem" (ENOENT)')
    refuses(() => optionsFromCommandLine({}, { PFX: '/missing/bundle.pfx' }), 'PFX: cannot read "/missing/bundle.pfx" (ENOENT)')
  })
})

describe('start() options', () => {
  it('a bad value is named by its key', () => {
    refuses(() => resolveConfig({ port: 70000 }), 'port: 70000 is not a port number (0 to 65535)')
    refuses(() => resolveConfig({ joinTimeoutMS: -1 }), 'joinTimeoutMS: -1 is not a duration in milliseconds (0 for no limit)')
    refuses(() => resolveConfig({ redis: 'localhost' }), 'redis: "localhost" is not a Redis URL (redis://[user:password@]host[:port][/db])')
    assert.throws(() => resolveConfig({ maxPeers: 1.5 }), (err: unknown) => err instanceof OptionError && err.option === 'maxPeers' && err.problem === '1.5 is not a count (0 for no limit)')
  })

  it('a TLS key needs its certificate, and a PKCS#12 file goes alone', () => {
    const bytes = Buffer.from('not really')
    refuses(() => resolveConfig({ key: bytes }), 'cert: a key was given without its certificate')
    refuses(() => resolveConfig({ cert: bytes }), 'key: a certificate was given without its key')
    refuses(() => resolveConfig({ pfx: bytes, key: bytes }), 'pfx: give either a PKCS#12 file or a key and a certificate, not both')
    refuses(() => resolveConfig({ pfx: bytes, cert: bytes, key: bytes }), 'pfx: give either a PKCS#12 file or a key and a certificate, not both')
    // a passphrase alone is no TLS at all
    assert.equal(resolveConfig({ passphrase: 'secret' }).tls, undefined)
    assert.throws(() => resolveConfig({ key: bytes, cert: bytes }), (err: unknown) => err instanceof OptionError && /^TLS rejected the key and certificate: /.test(err.problem))
  })

  it('the config has no TLS fields of its own, nor an unset Redis URL', () => {
    const config = resolveConfig({})
    for (const key of ['key', 'cert', 'pfx', 'passphrase', 'tls', 'redis']) assert.ok(!(key in config), key)
    assert.deepEqual(Object.keys(config).sort(), Object.keys(LIBRARY_DEFAULTS).sort())
    assert.equal(resolveConfig({ redis: 'redis://h:1' }).redis, 'redis://h:1')
  })
})

describe('defaults', () => {
  it('start() has the old library\'s, the command the old command\'s', () => {
    assert.equal(resolveConfig({}).port, 13579)
    assert.equal(resolveConfig({}, CLI_DEFAULTS).port, 9090)
    assert.equal(LIBRARY_DEFAULTS.strictMultiaddr, false)
    assert.equal(CLI_DEFAULTS.strictMultiaddr, true)
    assert.equal(LIBRARY_DEFAULTS.metrics, false)
    assert.equal(CLI_DEFAULTS.metrics, true)
    assert.equal(LIBRARY_DEFAULTS.cryptoChallenge, true)
    assert.equal(CLI_DEFAULTS.cryptoChallenge, true)
    assert.equal(LIBRARY_DEFAULTS.host, '0.0.0.0')
    // nothing else differs
    const differ = Object.keys(LIBRARY_DEFAULTS).filter((key) => LIBRARY_DEFAULTS[key as keyof Defaults] !== CLI_DEFAULTS[key as keyof Defaults])
    assert.deepEqual(differ.sort(), ['metrics', 'port', 'strictMultiaddr'])
  })

  it('keeps the values the server always had', () => {
    assert.deepEqual(LIBRARY_DEFAULTS, {
      port: 13579,
      host: '0.0.0.0',
      cryptoChallenge: true,
      strictMultiaddr: false,
      webrtcStar: true,
      metrics: false,
      refreshPeerListIntervalMS: 10_000,
      challengeTimeoutMS: 60_000,
      maxPendingChallenges: 16,
      dialTimeoutMS: 30_000,
      relayHighWaterBytes: 1_048_576,
      maxStreamsPerConnection: 256,
      maxRelayBytes: 0,
      maxRelayDurationMS: 0,
      shutdownGracePeriodMS: 10_000,
      maxAnnouncementsPerSecond: 600_000,
      maxPeersInJoinReply: 1000,
      maxAddressesPerConnection: 16,
      maxPeers: 0,
      maxConnectionsPerIP: 0,
      maxJoinsPerSecond: 20,
      maxDialsPerSecond: 50,
      maxSignalsPerSecond: 100,
      joinTimeoutMS: 60_000,
      maxUnsentBytes: 8_388_608,
      maxMessageBytes: 4_194_304,
      pingIntervalMS: 25_000,
      pingTimeoutMS: 20_000,
      proxyHeader: 'x-forwarded-for',
      requireOrigin: false,
      clusterNodeTimeoutMS: 30_000
    })
  })
})

describe('the table of options', () => {
  const every = [...OPTION_SPECS, ...COMMAND_SPECS]

  it('gives every option a flag, a variable and help text, none shared', () => {
    assert.deepEqual(COMMAND_SPECS.map((spec) => spec.key), ['workers'])
    for (const spec of every) {
      assert.match(spec.flag, /^[a-zA-Z][a-zA-Z0-9]*$/, spec.key)
      assert.match(spec.env, /^[A-Z][A-Z0-9_]*$/, spec.key)
      assert.ok(spec.describe.length > 10, spec.key)
      assert.doesNotMatch(spec.describe, /\[env /, `${spec.key}: the command adds the variable`)
    }
    for (const field of ['key', 'flag', 'env'] as const) {
      const names = every.map((spec) => spec[field])
      assert.equal(new Set(names).size, names.length, `${field}s are distinct`)
    }
    const aliases = every.flatMap((spec) => spec.alias !== undefined ? [spec.alias] : [])
    assert.deepEqual(aliases, ['p', 'h'])
  })

  it('gives a default to every option but TLS, the peer policy, the proxies, the origins, the admin token, Redis and --workers, one its own parser accepts', () => {
    const without = every.filter((spec) => spec.library === undefined).map((spec) => spec.key)
    assert.deepEqual(without, ['key', 'cert', 'pfx', 'passphrase', 'peerPolicy', 'trustProxy', 'allowedOrigins', 'adminToken', 'redis', 'workers'])
    for (const spec of every) {
      for (const value of [spec.library, spec.cli]) {
        if (value === undefined) continue
        assert.deepEqual(parseOptionValue(spec, value, spec.key), value, spec.key)
      }
    }
    for (const spec of OPTION_SPECS) {
      const key = spec.key as keyof Defaults
      assert.equal(LIBRARY_DEFAULTS[key], spec.library, spec.key)
      assert.equal(CLI_DEFAULTS[key], spec.cli ?? spec.library, spec.key)
    }
  })

  it('marks as negated exactly the "disable" flags, each a boolean', () => {
    for (const spec of every) {
      assert.equal(spec.negated === true, spec.flag.startsWith('disable'), spec.flag)
      if (spec.negated === true) assert.equal(spec.kind, 'boolean', spec.flag)
    }
  })
})
