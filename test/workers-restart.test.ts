/**
 * Restarts that used to leave clients hanging, with real processes: the CLI
 * with `--workers=2` on a real redis-server, three CLI nodes behind nginx with
 * docker-compose.yml's configuration, and real socket.io-client 2.x peers
 * that reconnect and join again on every connection, as
 * libp2p-websocket-star's do.
 *
 * - A connection the primary handed to a worker that is killed before it
 *   took it (Node keeps such handles queued in the primary) is closed, so
 *   its client comes back at once instead of waiting for its own timeout.
 * - A worker drained with SIGTERM is restarted at once: it did not crash.
 * - nginx keeps every node in its upstream through a rolling restart
 *   (`max_fails=0`).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it, type TestContext } from 'node:test'
import ioV2 from 'socket.io-client-v2'
import { Cleanup } from './helpers/cleanup.js'
import { connect } from './helpers/clients.js'
import { randomAddress } from './helpers/keys.js'
import { composeNginxConfig, NO_NGINX, startNginx, type NginxProcess } from './helpers/nginx.js'
import { freePort } from './helpers/ports.js'
import { childrenOf, tcpConnectionsOf } from './helpers/procfs.js'
import { NO_REDIS, startRedis, type RedisProcess } from './helpers/redis.js'
import { startCli, type CliServer } from './helpers/server.js'
import { until, within } from './helpers/wait.js'

/** src/workers.ts: a worker that exits sooner than this after its start gets the crash backoff. */
const CRASH_WINDOW_MS = 10_000
/**
 * How long a client may take to be back: far below socket.io-client's 20 s
 * connect timeout, which would otherwise bring a stranded client back too
 * (the peers below wait 60 s), and ample for a loaded machine.
 */
const BACK_WITHIN_MS = 10_000

/** A peer that reconnects quickly and joins its address again on every connection. */
interface Peer {
  socket: ReturnType<typeof ioV2>
  transport: 'websocket' | 'polling'
  address: string
  /** Connections so far (`connect` events), and joins acknowledged on them. */
  connects: number
  joins: number
  /** Why connections ended or failed: `disconnect` reasons and `connect_error` messages. */
  reasons: string[]
}

/** Opens a peer without waiting for it to connect: it may be stranded on a stopped worker. */
function openPeer (url: string, transport: Peer['transport'], cleanup: Cleanup): Peer {
  // timeout: a stranded connection must come back through the fix, not through the client giving up on it after 20 s
  const socket = ioV2(url, { transports: [transport], forceNew: true, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, timeout: 60_000 })
  cleanup.add(async () => { await Promise.resolve(socket.disconnect()) })
  const p: Peer = { socket, transport, address: randomAddress(), connects: 0, joins: 0, reasons: [] }
  socket.on('connect', () => {
    p.connects++
    socket.emit('ss-join', p.address, '', (err: unknown) => { if (err === null) p.joins++ })
  })
  socket.on('disconnect', (reason: string) => { p.reasons.push(reason) })
  socket.on('connect_error', (err: unknown) => { p.reasons.push(`connect_error: ${err instanceof Error ? err.message : String(err)}`) })
  return p
}

/** Connected, and joined on its current connection. */
const joined = (p: Peer): boolean => p.socket.connected && p.connects > 0 && p.joins >= p.connects

const describePeers = (peers: Peer[]): string => JSON.stringify(peers.map((p) => ({ transport: p.transport, connected: p.socket.connected, connects: p.connects, joins: p.joins, reasons: p.reasons })))

describe('--workers=2: workers that die or drain are replaced without stranding clients', { skip: NO_REDIS }, () => {
  const cleanup = new Cleanup()
  let cli: CliServer
  let launchedAt: number
  const workers = (): number[] => childrenOf(cli.proc.pid ?? 0).sort((a, b) => a - b)
  /** The pid of the worker that serves in place of `pid`, once the primary logs it. */
  const replacementOf = (pid: number): number => Number(new RegExp(`^rendezvous: worker (\\d+) serves, in place of worker ${pid}$`, 'm').exec(cli.output().stderr)?.[1] ?? 0)
  /** Two workers, each serving: every exit the primary logged has its replacement serving. */
  const settled = (): boolean => {
    const { stderr } = cli.output()
    return workers().length === 2 && (stderr.match(/^rendezvous: worker \d+ exited /gm) ?? []).length === (stderr.match(/^rendezvous: worker \d+ serves, in place of /gm) ?? []).length
  }

  before(async () => {
    const redis: RedisProcess = await startRedis()
    cleanup.add(async () => { await redis.kill() })
    launchedAt = Date.now()
    cli = await startCli(['--workers=2', `--redis=${redis.url}`, '--disableCryptoChallenge', '--shutdownGracePeriodMS=200'])
    cleanup.add(async () => {
      const pids = workers()
      await cli.stop('SIGKILL')
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
    })
    await until(() => workers().length === 2, 'two workers')
  })

  after(async () => { await cleanup.run() })

  it('a worker drained with SIGTERM alone and exiting 0 within the crash window is restarted at once, twice in a row (no "in 1 s")', async (t: TestContext) => {
    let victim = workers()[0] ?? 0
    for (const round of [1, 2]) {
      // the first worker is at most this old, its replacement much younger
      const ageBound = Date.now() - launchedAt
      if (ageBound >= CRASH_WINDOW_MS) t.diagnostic(`round ${round}: the worker may be ${ageBound} ms old, past the crash window: this round proves nothing`)
      const sentAt = Date.now()
      process.kill(victim, 'SIGTERM')
      const logged = new RegExp(`^rendezvous: worker ${victim} exited \\((.*?)\\), restarting it(.*)$`, 'm')
      await until(() => logged.test(cli.output().stderr), `the primary logs worker ${victim}'s exit`)
      const [, how, delay] = logged.exec(cli.output().stderr) ?? []
      assert.equal(how, 'code 0', cli.output().stderr)
      assert.equal(delay, '', `restarted without the crash backoff: ${cli.output().stderr}`)
      await until(() => replacementOf(victim) !== 0, `a new worker serves in place of ${victim}`)
      const replacement = replacementOf(victim)
      t.diagnostic(`round ${round}: worker ${victim} (at most ${ageBound} ms old) drained, replaced by ${replacement} serving ${Date.now() - sentAt} ms after the SIGTERM`)
      await until(() => workers().length === 2 && workers().includes(replacement), 'two workers again')
      victim = replacement
      // forked after the SIGTERM
      launchedAt = sentAt
    }
  })

  it('connections handed to a stopped worker that is then SIGKILLed are closed by the primary: every peer, polling and websocket, is back and joined within 10 s', async (t: TestContext) => {
    await until(settled, 'two workers serve')
    const primary = cli.proc.pid ?? 0
    /** Client connections the primary itself holds: handed to a worker that has not taken them yet. */
    const inPrimary = (): number => tcpConnectionsOf(primary, cli.port).length
    // one settled peer on each worker (least connections, one after the other)
    const peers: Peer[] = []
    for (let i = 0; i < 2; i++) {
      const p = openPeer(cli.uri, 'websocket', cleanup)
      peers.push(p)
      await until(() => joined(p), `first peer ${i} joins`)
    }
    const [victim, other] = workers() as [number, number]
    await until(() => tcpConnectionsOf(victim, cli.port).length === 1 && tcpConnectionsOf(other, cli.port).length === 1, 'one peer on each worker')

    process.kill(victim, 'SIGSTOP')
    let stopped = true
    try {
      // The stopped worker neither takes a connection nor counts a new
      // session, so least-connection soon sends every new one to it: the
      // primary holds them, the first as sent and waiting for the worker's
      // acknowledgement, the others queued behind it. Open peers one at a
      // time until a polling and a websocket peer are stranded there.
      const waiting = (): Peer[] => peers.filter((p) => !joined(p))
      const bothKinds = (some: Peer[]): boolean => some.some((p) => p.transport === 'polling') && some.some((p) => p.transport === 'websocket')
      for (let i = 0; i < 8 && !bothKinds(waiting()); i++) {
        const held = inPrimary()
        const p = openPeer(cli.uri, i % 2 === 0 ? 'polling' : 'websocket', cleanup)
        peers.push(p)
        await until(() => joined(p) || inPrimary() > held, `peer ${i} joins or waits in the primary`)
      }
      // (a connection on its way to the running worker is in the primary for a moment too)
      await until(() => inPrimary() === waiting().length, 'the peers not joined are the connections waiting in the primary', 5000)
      const stranded = waiting()
      t.diagnostic(`stranded in the primary for stopped worker ${victim}: ${stranded.map((p) => p.transport).join(', ')} of ${peers.length} peers`)
      assert.ok(bothKinds(stranded), describePeers(peers))

      const killedAt = Date.now()
      process.kill(victim, 'SIGKILL')
      stopped = false
      try {
        await until(() => peers.every(joined) && inPrimary() === 0, 'every peer joined again and the primary holds no connection', BACK_WITHIN_MS)
      } catch (err) {
        throw new Error(`${(err as Error).message}: ${inPrimary()} connections still in the primary; peers ${describePeers(peers)}`)
      }
      t.diagnostic(`after the SIGKILL every peer was back and joined in ${Date.now() - killedAt} ms; ${describePeers(stranded)}`)
      for (const p of stranded) assert.ok(p.reasons.length > 0, `a stranded peer saw its attempt fail: ${describePeers([p])}`)
      // the primary goes on: it replaces the killed worker
      await until(() => replacementOf(victim) !== 0, `a new worker serves in place of ${victim}`)
    } finally {
      if (stopped) process.kill(victim, 'SIGCONT')
    }
  })
})

/** nginx with docker-compose.yml's configuration (its `server` lines' parameters kept) in front of `nodePorts`. */
async function startComposeNginx (nodePorts: number[], cleanup: Cleanup): Promise<NginxProcess> {
  const nginx = await startNginx(nodePorts)
  cleanup.add(nginx.stop)
  return nginx
}

describe('docker-compose.yml nginx: every node stays in the upstream through rolling restarts', { skip: NO_REDIS !== false ? NO_REDIS : NO_NGINX }, () => {
  it('each upstream server has max_fails=0', () => {
    const servers = composeNginxConfig().match(/^\s*server rendezvous-\d+:9090\b[^;]*;/gm) ?? []
    assert.equal(servers.length, 3)
    for (const line of servers) assert.match(line, /\smax_fails=0\b/, line)
  })

  it('the node holding the peers restarted three times running: while it is down and once it is back a new websocket client connects through nginx at the first try, and the long-lived peers all rejoin', async (t: TestContext) => {
    const cleanup = new Cleanup()
    try {
      const redis = await startRedis()
      cleanup.add(async () => { await redis.kill() })
      const ports = [await freePort(), await freePort(), await freePort()]
      const args = (port: number): string[] => [`--redis=${redis.url}`, '--disableCryptoChallenge', '--shutdownGracePeriodMS=200', '--host=127.0.0.1', `--port=${port}`]
      const nodes = await Promise.all(ports.map(async (port) => await startCli(args(port))))
      cleanup.add(async () => { await Promise.all(nodes.map(async (node) => await node.stop('SIGKILL'))) })
      const nginx = await startComposeNginx(ports, cleanup)
      /** Connections from nginx that node `i` holds. */
      const held = (i: number): number => tcpConnectionsOf(nodes[i]?.proc.pid ?? 0, ports[i] ?? 0).length

      // long-lived websockets: nginx never sees these requests end while their node runs
      const peers = [0, 1, 2].map(() => openPeer(nginx.url, 'websocket', cleanup))
      /** A fresh client, without retries, must connect through nginx. */
      const connectsAtOnce = async (what: string): Promise<void> => {
        try {
          const client = await connect(nginx.url, 'v2', 'websocket', { timeout: 5000 })
          await client.close()
        } catch (err) {
          throw new Error(`${what}: a new client could not connect through nginx (${String(err)}); nginx's log:\n${nginx.errorLog()}`)
        }
      }

      // ip_hash sends every client of 127.0.0.1 to one node: the peers move
      // together, so restarting the node that holds them makes nginx fail to
      // reach a different node each time (with nginx's default max_fails=1
      // fail_timeout=10s each failure takes that node out for 10 s, and by
      // the third restart none is left)
      const startedAt = Date.now()
      const restarted: number[] = []
      for (let restart = 1; restart <= 3; restart++) {
        await until(() => peers.every(joined), `the peers joined through nginx before restart ${restart}`)
        let i = -1
        await until(() => {
          i = [0, 1, 2].find((n) => held(n) === peers.length) ?? -1
          return i !== -1
        }, `one node holds the ${peers.length} peers before restart ${restart}`)
        restarted.push(i)
        const exit = await within(nodes[i].stop('SIGTERM'), `node ${i} to exit`)
        assert.equal(exit.code, 0, JSON.stringify(exit))
        await connectsAtOnce(`restart ${restart}, node ${i} down`)
        nodes[i] = await startCli(args(ports[i]))
        await connectsAtOnce(`restart ${restart}, node ${i} back`)
      }
      await until(() => peers.every(joined), 'the peers joined again after the last restart')
      t.diagnostic(`restarted nodes ${restarted.join(', ')} in ${Date.now() - startedAt} ms; peers' reasons ${JSON.stringify(peers.map((p) => p.reasons))}`)
      assert.doesNotMatch(nginx.errorLog(), /no live upstreams|temporarily disabled/)
    } finally {
      await cleanup.run()
    }
  })
})
