/**
 * The package as npm publishes it, and the Docker image as the Dockerfile
 * builds it. No Docker engine is needed: the image's steps are performed with
 * processes, read from the Dockerfile itself, so that this test follows it.
 *
 * - build stage: the files it COPYs (and .dockerignore lets through) are
 *   copied to a temporary folder, where `npm run build` and `npm pack` run
 *   (the repository's node_modules stands in for `npm ci`);
 * - runtime stage: its `npm install` of the tarball runs with the same flags in
 *   an empty temporary folder, and its CMD and HEALTHCHECK run with its ENV plus
 *   what `docker run -e` would add.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { access, cp, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { connect, type Client } from './helpers/clients.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity } from './helpers/keys.js'
import { PATIENCE_MS, finished, launch, type Exit, type Running } from './helpers/server.js'
import { within } from './helpers/wait.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'
/** npm talks to the registry: a guard against hangs, not an expected time. */
const NPM_PATIENCE_MS = 200_000

interface PackageJson {
  name: string
  version: string
  main: string
  types: string
  bin: Record<string, string>
  files: string[]
  engines?: { node?: string }
  exports: Record<string, unknown>
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}

const readJson = async <T>(path: string): Promise<T> => JSON.parse(await readFile(path, 'utf8')) as T
const exists = async (path: string): Promise<boolean> => await access(path).then(() => true, () => false)

// ---------------------------------------------------------------- processes

/** Every process started; after() kills those still running. */
const children: ChildProcess[] = []
const clients: Client[] = []

/** `launch`, in `cwd`; after() kills the process if it is still running. */
function spawnTracked (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Running {
  const running = launch(command, args, { cwd, env })
  children.push(running.proc)
  return running
}

/** Runs a command to completion; killed if it takes longer than `patienceMs`. */
async function run (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, patienceMs = PATIENCE_MS): Promise<Exit> {
  return await finished(spawnTracked(command, args, cwd, env), patienceMs)
}

function assertSuccess (exit: Exit, what: string): void {
  assert.equal(exit.code, 0, `${what} failed: ${JSON.stringify(exit)}`)
}

/**
 * The environment for npm: this one, without what a parent `npm test` put in
 * it about itself, and with a cache of its own, so nothing is cached outside
 * the test's temporary folder.
 */
function npmEnv (cache: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const kept = /^npm_config_(registry|cafile|ca|strict_ssl|https?_proxy|proxy|noproxy|userconfig|globalconfig)$/i
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || kept.test(key)))
  return { ...env, ...extra, npm_config_cache: cache, npm_config_update_notifier: 'false' }
}

interface PackFile { path: string, size: number, mode: number }
interface Pack { filename: string, unpackedSize: number, files: PackFile[] }

function parsePack (exit: Exit): Pack {
  assertSuccess(exit, 'npm pack')
  // npm writes warnings to stderr; stdout is the JSON array alone
  const packs = JSON.parse(exit.stdout) as Pack[]
  assert.equal(packs.length, 1, exit.stdout)
  return packs[0]
}

// ---------------------------------------------------------- version ranges

type Version = [number, number, number]

function compare (a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]
}

/**
 * Whether `v` satisfies the npm range `range`. Covers what `engines.node`
 * fields use (`||`, space-separated comparators, `>=`, `>`, `<`, `<=`, `=`,
 * `^`, `~`, partial and x versions); anything else throws, rather than being
 * read wrongly. (The `semver` package is not installed in this repository.)
 */
function satisfies (v: Version, range: string): boolean {
  return range.split('||').some((alternative) => {
    const comparators = alternative.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1').split(/\s+/).filter((c) => c !== '')
    return comparators.every((comparator) => {
      const m = /^(>=|<=|>|<|=|\^|~)?v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$/.exec(comparator)
      if (m === null) throw new Error(`unsupported version range ${JSON.stringify(range)}`)
      /** The captures: undefined where an optional group took no part. */
      const captures: Array<string | undefined> = m.slice(1)
      const op = captures[0] ?? '='
      const parts = captures.slice(1).map((p) => p === undefined || /^[xX*]$/.test(p) ? undefined : Number(p))
      const given = parts.findIndex((p) => p === undefined)
      const n = given === -1 ? 3 : given // how many parts are numbers
      const [X = 0, Y = 0, Z = 0] = parts
      const low: Version = [X, Y, Z]
      /** The first version above the partial one: `1.2` → 1.3.0, `1` → 2.0.0. */
      const next: Version = n === 0 ? [Infinity, 0, 0] : n === 1 ? [X + 1, 0, 0] : n === 2 ? [X, Y + 1, 0] : [X, Y, Z + 1]
      switch (op) {
        case '>=': return compare(v, low) >= 0
        case '>': return compare(v, next) >= 0
        case '<': return compare(v, low) < 0
        case '<=': return compare(v, next) < 0
        case '=': return compare(v, low) >= 0 && compare(v, next) < 0
        case '~': return compare(v, low) >= 0 && compare(v, n >= 2 ? [X, Y + 1, 0] : next) < 0
        case '^': {
          const upper: Version = X > 0 || n < 2 ? [X + 1, 0, 0] : Y > 0 || n < 3 ? [0, Y + 1, 0] : [0, 0, Z + 1]
          return compare(v, low) >= 0 && compare(v, n === 0 ? [Infinity, 0, 0] : upper) < 0
        }
        default: throw new Error(`unsupported comparator ${comparator}`)
      }
    })
  })
}

const RUNNING_NODE = process.versions.node.split('.').map(Number) as Version

// --------------------------------------------------------------- Dockerfile

interface Instruction { keyword: string, args: string }
interface Stage { name?: string, instructions: Instruction[] }

/** The Dockerfile's stages, with continuation lines joined and comments dropped. */
function parseDockerfile (text: string): Stage[] {
  const stages: Stage[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('#')) continue
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `
      continue
    }
    const whole = `${pending}${line}`.trim()
    pending = ''
    if (whole === '') continue
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(whole) ?? []
    if (keyword.toUpperCase() === 'FROM') {
      const name = /\bAS\s+(\S+)\s*$/i.exec(args)?.[1]
      stages.push({ ...(name !== undefined ? { name } : {}), instructions: [] })
    }
    const stage = stages.at(-1)
    assert.ok(stage !== undefined, `${keyword} before the first FROM`)
    stage.instructions.push({ keyword: keyword.toUpperCase(), args })
  }
  return stages
}

const argsOf = (stage: Stage, keyword: string): string[] => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args)

/** `ENV A=1 B=2` (the form this Dockerfile uses) as an object. */
function envOf (stage: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const args of argsOf(stage, 'ENV')) {
    for (const pair of args.split(/\s+/)) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=("?)(.*)\2$/.exec(pair)
      assert.ok(m !== null, `an ENV the test can read: ${args}`)
      env[m[1]] = m[3]
    }
  }
  return env
}

/** A JSON-array (exec form) command, e.g. of CMD or of HEALTHCHECK … CMD. */
function execForm (args: string, what: string): string[] {
  const json = /(\[.*\])\s*$/.exec(args)?.[1]
  assert.ok(json !== undefined, `${what} in exec form: ${args}`)
  const argv = JSON.parse(json) as unknown
  assert.ok(Array.isArray(argv) && argv.length > 0 && argv.every((a) => typeof a === 'string'), `${what}: ${json}`)
  return argv
}

/** Whether `.dockerignore` keeps `path` out of the build context (last matching pattern wins). */
function dockerIgnores (patterns: string[], path: string): boolean {
  let ignored = false
  for (const raw of patterns) {
    const negated = raw.startsWith('!')
    const pattern = (negated ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '')
    const source = pattern.split(/(\*\*|\*|\?)/).map((part) =>
      part === '**' ? '.*' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('')
    // a pattern matching a folder leaves out everything in it
    if (new RegExp(`^${source}(/.*)?$`).test(path)) ignored = !negated
  }
  return ignored
}

// -------------------------------------------------------------------- tests

describe('the npm package', () => {
  let pkg: PackageJson
  let pack: Pack
  before(async () => {
    pkg = await readJson<PackageJson>(join(ROOT, 'package.json'))
    // dist/ is built by pretest: packing it as it is skips `prepare`
    const cache = await mkdtemp(join(tmpdir(), 'rendezvous-npm-cache-'))
    try {
      pack = parsePack(await run(NPM, ['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT, npmEnv(cache), NPM_PATIENCE_MS))
    } finally {
      await rm(cache, { recursive: true, force: true })
    }
  })

  it('holds the compiled library and command, the README, the licence and package.json', () => {
    const paths = new Set(pack.files.map((f) => f.path))
    const required = ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/bin/rendezvous.js', 'dist/src/version.js', 'README.md', 'LICENSE', 'package.json']
    // and whatever package.json points at
    required.push(...[pkg.main, pkg.types, ...Object.values(pkg.bin)].map((p) => p.replace(/^\.\//, '')))
    for (const path of required) assert.ok(paths.has(path), `${path} is packed`)
  })

  it('holds every file the packed code imports or requires by a relative path', async () => {
    const paths = new Set(pack.files.map((f) => f.path))
    const missing: string[] = []
    for (const { path } of pack.files.filter((f) => f.path.endsWith('.js'))) {
      const code = await readFile(join(ROOT, path), 'utf8')
      // `from './x.js'`, `import('./x.js')`, and version.ts's `createRequire(…)('../../package.json')`
      for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\)\s*\(\s*)['"](\.\.?\/[^'"]+)['"]/g)) {
        const target = posix.normalize(posix.join(posix.dirname(path), m[1]))
        if (!paths.has(target)) missing.push(`${path} → ${target}`)
      }
    }
    assert.deepEqual(missing, [], 'relative imports of files that are not packed')
    assert.ok(paths.has('dist/src/version.js') && paths.has('package.json'), 'version.js finds ../../package.json')
  })

  it('holds nothing else: no tests, benchmarks, TypeScript sources, CI scripts, node_modules or tarballs', () => {
    for (const { path } of pack.files) {
      const allowed = ['README.md', 'LICENSE', 'package.json'].includes(path) || /^dist\/(src|bin)\//.test(path)
      assert.ok(allowed, `${path} should not be packed`)
      assert.doesNotMatch(path, /^(test|bench|src|bin|\.ci|node_modules|dist\/test|dist\/bench)\//, path)
      assert.ok(!path.endsWith('.ts') || path.endsWith('.d.ts'), `${path}: a TypeScript source`)
      assert.ok(!path.endsWith('.tgz'), path)
    }
  })

  it('stays small', () => {
    // about 180 kB today (JavaScript, declarations and source maps of ~15
    // modules): 500 kB leaves room to grow, and still fails at once if test
    // or bench output, node_modules or a tarball slip in
    assert.ok(pack.unpackedSize < 500_000, `unpacked size ${pack.unpackedSize} bytes`)
  })

  it('each bin is a node script', async () => {
    assert.deepEqual(Object.keys(pkg.bin).sort(), ['rendezvous', 'websocket-star'])
    for (const target of Object.values(pkg.bin)) {
      const first = (await readFile(join(ROOT, target), 'utf8')).split('\n', 1)[0]
      assert.equal(first, '#!/usr/bin/env node', `${target} starts with a shebang`)
    }
  })

  it('declares engines.node, and this Node satisfies it', () => {
    const range = pkg.engines?.node
    assert.ok(typeof range === 'string' && range !== '', 'engines.node is set')
    assert.ok(satisfies(RUNNING_NODE, range), `Node ${process.versions.node} satisfies ${range}`)
    // the hand-written range reader, on ranges of this kind
    assert.ok(satisfies([20, 19, 0], '>=20.19.0') && !satisfies([20, 18, 3], '>=20.19.0'))
    assert.ok(satisfies([22, 12, 0], '^20.19.0 || ^22.12.0 || >=23') && !satisfies([22, 11, 0], '^20.19.0 || ^22.12.0 || >=23'))
    assert.ok(satisfies([18, 0, 0], '^16 || ^18 || >=20') && !satisfies([19, 9, 0], '^16 || ^18 || >=20'))
    assert.ok(satisfies([20, 0, 0], '>= 0.4') && satisfies([20, 0, 0], '>=4') && !satisfies([20, 0, 0], '<20'))
  })
})

describe('the Docker image, step by step', () => {
  let pkg: PackageJson
  let build: Stage
  let runtime: Stage
  /** The runtime stage's ENV: what every process of the container sees. */
  let imageEnv: Record<string, string>
  /** The runtime stage's WORKDIR (/app), and where this test puts it. */
  let workdir: string
  let app: string
  /** '' until before() made it. */
  let temp = ''
  let cache: string
  let tarball: string | undefined

  /** `node` on PATH is this Node, as it is the image's in the container. */
  const PATH = [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter)

  /** A container's environment: the image's ENV, then `docker run -e`. Nothing of the test runner's leaks in. */
  const containerEnv = (dockerRunE: Record<string, string>): NodeJS.ProcessEnv => ({ PATH, HOME: temp, ...imageEnv, ...dockerRunE })

  /** An absolute path of the container, in this test's folder. */
  const inContainer = (path: string): string => path === workdir || path.startsWith(`${workdir}/`) ? join(app, relative(workdir, path)) : path

  after(async () => {
    await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
    for (const proc of children.splice(0)) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    if (temp !== '') await rm(temp, { recursive: true, force: true })
  })

  before(async () => {
    pkg = await readJson<PackageJson>(join(ROOT, 'package.json'))
    const stages = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'))
    assert.equal(stages.length, 2, 'a build stage and a runtime stage')
    build = stages[0]
    runtime = stages[1]
    imageEnv = envOf(runtime)
    workdir = argsOf(runtime, 'WORKDIR').pop() ?? '/'
    temp = await mkdtemp(join(tmpdir(), 'rendezvous-image-'))
    cache = join(temp, 'npm-cache')
    app = join(temp, 'app')
  })

  it('build stage: copies what the build needs, none of it left out by .dockerignore, and builds and packs the package', { timeout: 120_000 }, async () => {
    const ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    const context = join(temp, 'build')
    await mkdir(context)
    const copied: string[] = []
    for (const args of argsOf(build, 'COPY')) {
      const words = args.split(/\s+/)
      assert.ok(!words.some((w) => w.startsWith('--')), `a plain COPY from the context: ${args}`)
      const sources = words.slice(0, -1)
      for (const source of sources) {
        assert.ok(await exists(join(ROOT, source)), `${source} exists`)
        assert.ok(!dockerIgnores(ignore, source), `${source} is not left out of the build context by .dockerignore`)
        await cp(join(ROOT, source), join(context, source), {
          recursive: true,
          filter: (from) => !dockerIgnores(ignore, relative(ROOT, from))
        })
        copied.push(source)
      }
    }
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.build.json', 'src', 'bin', 'README.md', 'LICENSE']) {
      assert.ok(copied.includes(needed), `the build stage copies ${needed}`)
    }
    // the context stays small: what the image never uses is left out
    for (const heavy of ['node_modules', 'dist', '.git', '.ci', 'x.tgz']) assert.ok(dockerIgnores(ignore, heavy), `.dockerignore leaves out ${heavy}`)

    // `npm ci` fails at once if the lock file does not match package.json
    const lock = await readJson<{ name: string, version: string, packages: Partial<Record<string, { dependencies?: object, devDependencies?: object }>> }>(join(ROOT, 'package-lock.json'))
    assert.equal(lock.name, pkg.name)
    assert.equal(lock.version, pkg.version)
    assert.deepEqual(lock.packages['']?.dependencies ?? {}, pkg.dependencies, 'package-lock.json has the dependencies of package.json')
    assert.deepEqual(lock.packages['']?.devDependencies ?? {}, pkg.devDependencies, 'package-lock.json has the devDependencies of package.json')

    const runs = argsOf(build, 'RUN').join(' && ')
    assert.match(runs, /npm ci\b/)
    assert.match(runs, /npm run build && npm pack --ignore-scripts\b/)
    // the repository's node_modules stands in for `npm ci`
    await symlink(join(ROOT, 'node_modules'), join(context, 'node_modules'), 'dir')
    assertSuccess(await run(NPM, ['run', 'build'], context, npmEnv(cache), NPM_PATIENCE_MS), 'npm run build in the build stage')
    const packed = join(temp, 'packed')
    await mkdir(packed)
    const pack = parsePack(await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', packed], context, npmEnv(cache), NPM_PATIENCE_MS))
    tarball = join(packed, pack.filename)
    assert.ok(await exists(tarball), tarball)
  })

  it('runtime stage: installs the tarball with production dependencies only, as the Dockerfile does', { timeout: 240_000 }, async () => {
    const builtTarball = tarball
    assert.ok(builtTarball !== undefined, 'the build stage packed the package')
    // COPY --from=build <tarball in the build stage> <tarball in this stage>
    const fromBuild = argsOf(runtime, 'COPY').map((args) => args.split(/\s+/)).find((words) => words[0] === '--from=build')
    assert.ok(fromBuild !== undefined && fromBuild.length === 3, 'the runtime stage copies the tarball from the build stage')
    const copiedTarball = fromBuild[2]
    const install = argsOf(runtime, 'RUN').flatMap((args) => args.split('&&').map((c) => c.trim())).find((c) => c.startsWith('npm install '))
    assert.ok(install !== undefined, 'the runtime stage runs npm install')
    const argv = install.split(/\s+/).slice(1)
    assert.ok(argv.includes('--omit=dev'), `${install}: production dependencies only`)
    const prefix = argv.indexOf('--prefix')
    assert.ok(prefix !== -1 && argv[prefix + 1] === workdir, `${install}: installs into WORKDIR ${workdir}`)
    assert.ok(argv.includes(copiedTarball), `${install}: installs ${copiedTarball}`)
    // the same command, with this test's folders for /app and the tarball
    const here = argv.map((a) => a === copiedTarball ? builtTarball : inContainer(a))
    await mkdir(app, { recursive: true })
    // ENV comes before RUN in the Dockerfile: npm runs with NODE_ENV=production
    const exit = await run(NPM, here, temp, npmEnv(cache, imageEnv), NPM_PATIENCE_MS)
    assertSuccess(exit, `npm ${here.join(' ')}`)
    assert.ok(await exists(join(app, 'node_modules', pkg.name, 'package.json')), 'the package is installed')
  })

  it('the installed tree has no devDependencies', async () => {
    const modules = join(app, 'node_modules')
    for (const name of ['typescript', 'socket.io-client-v2', 'socket.io-client', 'playwright-core', 'old-rendezvous', 'libp2p-websocket-star', 'parse-prometheus-text-format']) {
      assert.equal(await exists(join(modules, name)), false, `${name} is not installed`)
    }
    // some devDependencies are also what a production dependency needs
    // (engine.io depends on @types/node): those may be there, no others
    const lock = await readJson<{ packages: Record<string, { dev?: boolean, dependencies?: object, optionalDependencies?: object, peerDependencies?: object }> }>(join(app, 'package-lock.json'))
    const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'))
    assert.deepEqual(installed.filter(([, entry]) => entry.dev === true).map(([path]) => path), [], 'nothing installed as dev')
    const wantedBySomething = new Set(installed.flatMap(([path, entry]) => path === `node_modules/${pkg.name}`
      ? []
      : [...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {}), ...Object.keys(entry.peerDependencies ?? {})]))
    for (const dev of Object.keys(pkg.devDependencies)) {
      if (await exists(join(modules, dev))) assert.ok(wantedBySomething.has(dev), `${dev}: a devDependency installed though no production dependency needs it`)
    }
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(await exists(join(modules, dep)), `${dep} is installed`)
  })

  it('USER node can run it: every installed file readable by all, the bin executable by all', async () => {
    assert.equal(argsOf(runtime, 'USER').pop(), 'node', 'the server does not run as root')
    const unreadable: string[] = []
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name)
        if (entry.isSymbolicLink()) continue
        const { mode } = await stat(path)
        if (entry.isDirectory()) {
          if ((mode & 0o005) !== 0o005) unreadable.push(path)
          await walk(path)
        } else if ((mode & 0o004) === 0) unreadable.push(path)
      }
    }
    await walk(join(app, 'node_modules'))
    assert.deepEqual(unreadable, [], 'files and folders USER node cannot read')
    for (const bin of Object.keys(pkg.bin)) {
      const { mode } = await stat(join(app, 'node_modules', '.bin', bin))
      assert.equal(mode & 0o001, 0o001, `${bin} is executable by all`)
    }
  })

  it('the installed bins print the version of the installed package.json', async () => {
    for (const bin of Object.keys(pkg.bin)) {
      const exit = await run(join(app, 'node_modules', '.bin', bin), ['--version'], temp, containerEnv({}))
      assertSuccess(exit, `${bin} --version`)
      assert.equal(exit.stdout.trim(), pkg.version)
    }
  })

  /** Starts the container's CMD with `docker run -e` variables; resolves once it is listening. */
  async function startContainer (dockerRunE: Record<string, string>): Promise<Running & { uri: string, port: number }> {
    const cmd = execForm(argsOf(runtime, 'CMD').pop() ?? '', 'CMD')
    assert.deepEqual(cmd, [`${workdir}/node_modules/.bin/rendezvous`], 'CMD runs the installed bin, with no arguments')
    const [command = '', ...args] = cmd.map(inContainer)
    const running = spawnTracked(command, args, app, containerEnv(dockerRunE))
    const uri = await within(new Promise<string>((resolve, reject) => {
      const onData = (): void => {
        const match = /Listening on: (\S+)/.exec(running.output().stdout)
        if (match?.[1] !== undefined) {
          running.proc.stdout?.off('data', onData)
          resolve(match[1])
        }
      }
      running.proc.stdout?.on('data', onData)
      void running.exited.then((exit) => { reject(new Error(`exited before listening: ${JSON.stringify(exit)}`)) })
    }), `the container to listen: ${JSON.stringify(running.output())}`)
    return { ...running, uri, port: Number(new URL(uri).port) }
  }

  async function stopContainer (container: Running): Promise<Exit> {
    container.proc.kill('SIGTERM')
    return await within(container.exited, 'the container to stop')
  }

  /** Runs the HEALTHCHECK's command, as Docker would inside the container, within its --timeout. */
  async function healthcheck (dockerRunE: Record<string, string>): Promise<Exit> {
    const args = argsOf(runtime, 'HEALTHCHECK').pop() ?? ''
    const argv = execForm(args, 'HEALTHCHECK CMD')
    const timeout = /--timeout=(\d+)s\b/.exec(args)?.[1]
    const [command = '', ...rest] = argv.map(inContainer)
    return await run(command, rest, app, containerEnv(dockerRunE), timeout !== undefined ? Number(timeout) * 1000 : 30_000)
  }

  it('docker run -e PORT -e HOST: health, metrics and a crypto-challenge join; the HEALTHCHECK passes; SIGTERM exits 0', async () => {
    assert.equal(imageEnv.NODE_ENV, 'production')
    assert.equal(argsOf(runtime, 'EXPOSE').pop(), imageEnv.PORT, 'EXPOSE the default PORT')
    const container = await startContainer({ PORT: '0', HOST: '127.0.0.1' })
    const dockerRunE = { PORT: String(container.port), HOST: '127.0.0.1' }
    assert.notEqual(container.port, 0)

    const health = await fetch(`${container.uri}/health`)
    assert.equal(health.status, 200)
    assert.equal((await health.json() as { status: unknown }).status, 'ok')
    const metrics = await fetch(`${container.uri}/metrics`)
    assert.equal(metrics.status, 200)
    assert.match(await metrics.text(), /^rendezvous_peers{transport="websocket-star"} \d+$/m)

    // the command requires the crypto challenge by default
    const client = await connect(container.uri, 'v2', 'websocket')
    clients.push(client)
    const identity = await libp2pIdentity('Ed25519')
    const address = addressOf(identity.id, container.port)
    const { answer: ack } = await joinWithChallenge(client, address, identity)
    assert.equal(ack.length, 3, JSON.stringify(ack))
    assert.equal(ack[0], null)
    assert.equal(ack[1], null)
    assert.ok(Array.isArray(ack[2]), `peers: ${JSON.stringify(ack)}`)

    const passing = await healthcheck(dockerRunE)
    assert.equal(passing.code, 0, `HEALTHCHECK against a running server: ${JSON.stringify(passing)}`)

    const disconnected = client.next('disconnect')
    const exit = await stopContainer(container)
    assert.equal(exit.code, 0, JSON.stringify(exit))
    assert.equal(exit.signal, null)
    await disconnected

    const failing = await healthcheck(dockerRunE)
    assert.notEqual(failing.code, 0, `HEALTHCHECK with the server gone: ${JSON.stringify(failing)}`)
    assert.equal(failing.signal, null, 'the HEALTHCHECK failed by itself, within its --timeout')
  })

  it('docker run -e DISABLE_METRICS=1 serves no /metrics, as the old README says', async () => {
    const container = await startContainer({ PORT: '0', HOST: '127.0.0.1', DISABLE_METRICS: '1' })
    const metrics = await fetch(`${container.uri}/metrics`)
    assert.equal(metrics.status, 404)
    await metrics.arrayBuffer()
    const health = await fetch(`${container.uri}/health`)
    assert.equal(health.status, 200)
    await health.arrayBuffer()
    const exit = await stopContainer(container)
    assert.equal(exit.code, 0, JSON.stringify(exit))
  })

  it('engines.node claims no Node version an installed dependency refuses', async () => {
    const ours = pkg.engines?.node ?? ''
    const ranges: Array<[string, string]> = []
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (!entry.isDirectory() || entry.name.startsWith('.')) continue
        const path = join(dir, entry.name)
        if (entry.name.startsWith('@')) { await walk(path); continue }
        const manifest = join(path, 'package.json')
        if (await exists(manifest)) {
          const { name, version, engines } = await readJson<{ name: string, version: string, engines?: { node?: unknown } }>(manifest)
          if (name !== pkg.name && typeof engines?.node === 'string') ranges.push([`${name}@${version}`, engines.node])
        }
        if (await exists(join(path, 'node_modules'))) await walk(join(path, 'node_modules'))
      }
    }
    await walk(join(app, 'node_modules'))
    assert.ok(ranges.length > 0)
    const probes: Version[] = [RUNNING_NODE]
    for (let major = 16; major <= 26; major++) for (const minor of [0, 11, 12, 18, 19, 20]) probes.push([major, minor, 0])
    const refused: string[] = []
    for (const probe of probes.filter((v) => satisfies(v, ours))) {
      for (const [who, range] of ranges) if (!satisfies(probe, range)) refused.push(`Node ${probe.join('.')}: ${who} wants ${range}`)
    }
    assert.deepEqual(refused, [], `engines.node ${ours} is wider than the dependencies allow`)
  })
})
