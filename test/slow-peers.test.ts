/**
 * Peers that stop reading, and peers that vanish: a real client in a child
 * process frozen with SIGSTOP, its socket left open, against the CLI. The
 * server is watched from outside, as an operator would: /metrics and the
 * process's RSS through procfs.
 */
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client, type ClientVersion } from './helpers/clients.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress, randomPeerId } from './helpers/keys.js'
import { sampleOr, scrape, untilScraped as untilScrapedUrl, type Scraped } from './helpers/metrics.js'
import { spawnPeer, type PeerProcess } from './helpers/peer-process.js'
import { LIVE_MEMORY_ENV, liveBytes } from './helpers/live-memory.js'
import { watchRss } from './helpers/procfs.js'
import { NO_REDIS, startRedis } from './helpers/redis.js'
import { PATIENCE_MS, startCli, type CliServer } from './helpers/server.js'
import { STREAM, Source, accepted, makeChunks, send } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

const KiB = 1024
const MiB = 1024 * KiB
const UNSENT_REASON = 'unsent output over the limit'

/** Resolves with the scrape that satisfies `condition`; scrapes every 25 ms. */
async function untilScraped (cli: CliServer, condition: (m: Scraped) => boolean, what: string, patienceMs = PATIENCE_MS): Promise<Scraped> {
  return await untilScrapedUrl(cli.uri, condition, what, (m) => {
    const figures = ['rendezvous_peers', 'rendezvous_connections', 'rendezvous_discovery_announcements_dropped_total', 'rendezvous_relay_paused_senders']
      .map((name) => `${name}=${sampleOr(m, name)}`).join(' ')
    return `${figures}, closed for unsent output=${sampleOr(m, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON })}`
  }, patienceMs)
}

/** A websocket-star address of about 940 characters (the server takes up to 1 KiB): few peers make a heavy storm. */
function longAddress (port: number): string {
  const labels = Array.from({ length: 14 }, (_, i) => `${String.fromCharCode(97 + i)}${'x'.repeat(59)}`)
  return `/dns4/${labels.join('.')}/tcp/${port}/ws/p2p-websocket-star/ipfs/${randomPeerId()}`
}

/** A client that only counts its announcements (keeping 10^5 strings of 1 KiB would weigh on the test process). */
interface Counter { client: Client, heard: () => number, addresses: string[] }

/** A socket.io-client 2.x socket over websocket, down to the ws WebSocket under its Engine.IO transport. */
interface WebSocketClient { io: { engine: { transport: { ws: { bufferedAmount: number } } } } }

async function counter (url: string, version: ClientVersion): Promise<Counter> {
  const client = await connect(url, version)
  client.socket.off('ws-peer')
  let heard = 0
  client.socket.on('ws-peer', () => { heard++ })
  return { client, heard: () => heard, addresses: [] }
}

/**
 * Dials `peer` (a peer process, which accepts every dial) from `client`;
 * resolves once the server accepted the forward stream from `client`.
 */
async function dialProcess (client: Client, from: string, peer: PeerProcess): Promise<{ forward: string, back: Source, forwardEnded: Promise<unknown[]> }> {
  const dialId = randomUUID()
  const forward = `${dialId}.dialer`
  const maySend = accepted(client, forward)
  const back = new Source(client, `${dialId}.listener`)
  // no time limit here: each test waits for it within its own
  const forwardEnded = new Promise<unknown[]>((resolve) => { client.socket.on(`${STREAM}error.${forward}`, (...end: unknown[]) => { resolve(end) }) })
  const answer = await client.request('ss-dial', from, peer.address, dialId)
  assert.deepEqual(answer.filter((x) => x !== undefined && x !== null), [], `dial ${dialId}`)
  await maySend
  await peer.next((e) => e.event === 'incoming' && e.dialId === dialId, 'the dial arrives')
  return { forward, back, forwardEnded }
}

/** Sends `chunks` on stream `name` without ending it (`send` with no end argument ends it with `true`). */
function queue (client: Client, name: string, chunks: Iterable<Buffer>): void {
  for (const chunk of chunks) client.emit(`${STREAM}queue.${name}`, chunk)
}


function mib (bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`
}

/*
 * The storm: four connections in this process hold 16 addresses of ~1 KiB
 * each, so a few connections (that this process can read at full speed) make
 * a heavy storm. Two peer processes are frozen in it. Over websocket, the
 * server writes announcements to the TCP socket and skips a peer with 256 KiB
 * unsent, so announcements alone never take its output to the cap: it is
 * pushed there by relayed data held for it. Over polling, announcements queue
 * in Engine.IO until the peer's next request, so the cap is what bounds them.
 */
describe('a peer that stops reading during a discovery storm', () => {
  it('is skipped by announcements, then disconnected once its unsent output passes the cap, and the others hear on', async () => {
    const cleanup = new Cleanup()
    try {
      // every joined address announced to everyone every 10 ms; an unread
      // output of 1 MiB disconnects a peer
      const cli = await startCli(['--disableCryptoChallenge', '--refreshPeerListIntervalMS=10', `--maxUnsentBytes=${MiB}`])
      cleanup.add(async () => { await cli.stop('SIGKILL') })
      const url = cli.uri
      const pid = cli.proc.pid as number

      // four connections holding 16 long addresses each: 64 addresses of
      // ~1 KiB, about 6 MiB/s of announcements to every peer
      const counters: Counter[] = []
      for (const version of ['v2', 'v4', 'v2', 'v4'] as const) {
        const c = await counter(url, version)
        cleanup.add(async () => { await c.client.close() })
        counters.push(c)
        for (let i = 0; i < 16; i++) {
          const address = longAddress(cli.port)
          await joinWithoutChallenge(c.client, address)
          c.addresses.push(address)
        }
      }
      // the peer to freeze (socket.io-client 2.x over websocket), with a relay into it
      const wsPeer = await spawnPeer(url, randomAddress(cli.port), 'v2', 'websocket')
      cleanup.add(wsPeer.kill)
      const dialler = counters[0]
      const relayed = await dialProcess(dialler.client, dialler.addresses[0], wsPeer)

      // warm-up: every peer reads at full speed; the server's RSS reaches its working size
      const warm = watchRss(pid)
      cleanup.add(() => { warm.stop(); return Promise.resolve() })
      const warmTarget = counters.map((c) => c.heard() + 50_000)
      await until(() => counters.every((c, i) => c.heard() >= warmTarget[i]), 'every peer heard 50,000 announcements')
      const start = await scrape(url)
      assert.equal(sampleOr(start, 'rendezvous_peers'), 65)
      assert.equal(sampleOr(start, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }), 0, 'nobody was disconnected while everyone reads')
      const droppedAtFreeze = sampleOr(start, 'rendezvous_discovery_announcements_dropped_total')
      const baseline = warm.stop()

      const watch = watchRss(pid)
      cleanup.add(() => { watch.stop(); return Promise.resolve() })
      // and a peer over polling, frozen as soon as it has joined: a polling
      // peer on a busy 2-core machine cannot be relied on to keep up with
      // this storm for long without passing the cap
      const pollingPeer = await spawnPeer(url, randomAddress(cli.port), 'v2', 'polling')
      cleanup.add(pollingPeer.kill)
      pollingPeer.freeze()
      const frozenAt = Date.now()
      wsPeer.freeze()
      const heardAtFreeze = counters.map((c) => c.heard())

      // the polling peer's announcements queue in Engine.IO: over 1 MiB, it is disconnected
      await untilScraped(cli, (m) => sampleOr(m, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }) === 1 && sampleOr(m, 'rendezvous_peers') === 65,
        'the polling peer is disconnected for its unsent output')
      const pollingGoneMs = Date.now() - frozenAt
      // the websocket peer's kernel buffers fill, then announcements to it
      // are dropped once 256 KiB wait in the server
      const dropped = async (count: number): Promise<Scraped> => await untilScraped(cli, (m) => sampleOr(m, 'rendezvous_discovery_announcements_dropped_total') - droppedAtFreeze >= count,
        `${count} announcements to the frozen websocket peer are dropped`, 60_000)
      await dropped(8_000)
      const settled = watch.stop()
      const whileDropping = watchRss(pid)
      cleanup.add(() => { whileDropping.stop(); return Promise.resolve() })
      const dropTarget = 80_000
      const dropping = await dropped(dropTarget)
      const droppedMs = Date.now() - frozenAt
      const peakDropping = whileDropping.stop()
      // ...and it is still there: dropping keeps its output under the cap
      assert.equal(sampleOr(dropping, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }), 1)
      assert.equal(sampleOr(dropping, 'rendezvous_peers'), 65)
      const probe = await counter(url, 'v4')
      cleanup.add(async () => { await probe.client.close() })
      const listed = await joinWithoutChallenge(probe.client, randomAddress(cli.port))
      assert.ok(listed.includes(wsPeer.address), 'the frozen websocket peer still holds its address')
      assert.ok(!listed.includes(pollingPeer.address), 'the disconnected polling peer\'s address is released')

      const after = watchRss(pid)
      cleanup.add(() => { after.stop(); return Promise.resolve() })
      // relayed data is never dropped: held for the frozen peer up to the
      // relay's high-water mark (1 MiB, the default), it takes the peer's
      // unsent output past the cap (1 MiB here, 8 MiB by default), and the
      // peer is disconnected. 64 MiB of it: more than the loopback socket
      // buffers of a frozen peer can absorb however far the kernel grows
      // them (tcp_rmem reaches 32 MiB here), so the excess must wait in the server
      const chunks = [...makeChunks(1024, 64 * KiB)]
      queue(dialler.client, relayed.forward, chunks)
      const closed = await untilScraped(cli, (m) => sampleOr(m, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }) === 2 && sampleOr(m, 'rendezvous_peers') === 65,
        'the frozen websocket peer is disconnected for its unsent output')
      const wsGoneMs = Date.now() - frozenAt
      assert.equal(sampleOr(closed, 'rendezvous_relayed_streams'), 0, 'its relayed streams are freed')
      assert.deepEqual(await within(relayed.forwardEnded, 'the end of the stream the dialler sent on'), [true])
      assert.equal((await within(relayed.back.done, 'the end of the stream back')).end, true)
      const listedAfter = await joinWithoutChallenge(probe.client, randomAddress(cli.port))
      assert.ok(!listedAfter.includes(wsPeer.address), 'the websocket peer\'s address is released')

      // every other peer kept hearing every address the whole time
      const heardSince = counters.map((c, i) => c.heard() - heardAtFreeze[i])
      await until(() => counters.every((c, i) => c.heard() - heardAtFreeze[i] >= 40_000), 'every other peer heard 40,000 more announcements')
      const peak = Math.max(settled, peakDropping, after.stop())
      process.stdout.write(`# storm: polling peer gone after ${pollingGoneMs} ms, ${dropTarget} dropped after ${droppedMs} ms, websocket peer gone after ${wsGoneMs} ms; ` +
        `heard since the freeze ${heardSince.join('/')}; server RSS: warm ${mib(baseline)}, once dropping ${mib(settled)}, ` +
        `peak while ${dropTarget - 8_000} more were dropped ${mib(peakDropping)}, peak overall ${mib(peak)}\n`)
      // those ~65 MiB of announcements, buffered anywhere, would show
      assert.ok(peakDropping - settled < 16 * MiB, `server RSS grew by ${mib(peakDropping - settled)} while announcements to a frozen peer were dropped`)
      // and the whole episode stays within a working set's fluctuation
      assert.ok(peak - baseline < 48 * MiB, `server RSS grew by ${mib(peak - baseline)} while a peer was frozen in the storm`)
      assert.equal(sampleOr(await scrape(url), 'rendezvous_connections'), 5, 'the four counters and the probe are connected')
    } finally {
      await cleanup.run()
    }
  })
})

/*
 * Both on one server and across two cluster nodes (the sender on one, the
 * frozen receiver on the other): there the path between the nodes backs up
 * instead of a socket, and the sender's node must hold the sender back.
 */
describe('a relay into a peer that stops reading', () => {
  for (const across of [false, true]) {
    const where = across ? 'across two cluster nodes' : 'on one server'
    it(`${where}: holds the sender back with the servers' memory bounded, drops nothing, and delivers every byte once the peer reads again`, { skip: across ? NO_REDIS : false }, async () => {
      const cleanup = new Cleanup()
      try {
        // the defaults: relayHighWaterBytes 1 MiB, maxUnsentBytes 8 MiB
        let senderNode: CliServer
        let receiverNode: CliServer
        if (across) {
          const redis = await startRedis()
          cleanup.add(async () => { await redis.stop() })
          senderNode = await startCli(['--disableCryptoChallenge', `--redis=${redis.url}`], LIVE_MEMORY_ENV)
          cleanup.add(async () => { await senderNode.stop('SIGKILL') })
          receiverNode = await startCli(['--disableCryptoChallenge', `--redis=${redis.url}`], LIVE_MEMORY_ENV)
          cleanup.add(async () => { await receiverNode.stop('SIGKILL') })
        } else {
          senderNode = receiverNode = await startCli(['--disableCryptoChallenge'], LIVE_MEMORY_ENV)
          cleanup.add(async () => { await senderNode.stop('SIGKILL') })
        }
        const nodes = across ? [senderNode, receiverNode] : [senderNode]
        const sender = await connect(senderNode.uri, 'v2')
        cleanup.add(async () => { await sender.close() })
        const from = randomAddress(senderNode.port)
        await joinWithoutChallenge(sender, from)
        const receiver = await spawnPeer(receiverNode.uri, randomAddress(receiverNode.port), 'v2', 'websocket')
        cleanup.add(receiver.kill)
        const relayed = await dialProcess(sender, from, receiver)

        const chunks = makeChunks(Number.MAX_SAFE_INTEGER, 64 * KiB)
        const hash = createHash('sha256')
        let sent = 0
        const sendMiB = (n: number): void => {
          for (let i = 0; i < 16 * n; i++) {
            const chunk = chunks.next().value as Buffer
            hash.update(chunk)
            sent += chunk.length
            queue(sender, relayed.forward, [chunk])
          }
        }
        // what the sender has written that its TCP socket has not taken yet
        const stuckAtSender = (): number => (sender.socket as unknown as WebSocketClient).io.engine.transport.ws.bufferedAmount

        // mid-transfer: the receiver has read 16 MiB of 32 when it freezes
        const warm = nodes.map((node) => watchRss(node.proc.pid as number))
        cleanup.add(() => { for (const w of warm) w.stop(); return Promise.resolve() })
        sendMiB(32)
        await receiver.next((e) => e.event === 'data' && (e.bytes as number) >= 16 * MiB, 'the receiver reads 16 MiB')
        const baselines = warm.map((w) => w.stop())
        const liveBaselines = await Promise.all(nodes.map(liveBytes))
        const watches = nodes.map((node) => watchRss(node.proc.pid as number))
        cleanup.add(() => { for (const w of watches) w.stop(); return Promise.resolve() })
        receiver.freeze()
        // the sender sends 32 MiB more: the servers must leave it with the sender
        sendMiB(32)
        // How much the kernels' TCP buffers take before the sender feels it
        // depends on the machine (tcp_rmem may let a paused socket's receive
        // buffer grow to 32 MiB), so the test does not count bytes: it waits
        // until the sender's own buffer holds data and stops draining, which
        // it cannot do while the server still reads it.
        let last = -1
        let steadySince = Date.now()
        const held = (): boolean => {
          const now = stuckAtSender()
          if (now !== last) { last = now; steadySince = Date.now() }
          return now > 0 && Date.now() - steadySince >= 500
        }
        const paused = await untilScraped(senderNode, (m) => sampleOr(m, 'rendezvous_relay_paused_senders') === 1 && held(),
          'the sender\'s server pauses it, and what it sent after the freeze stays with it')
        const growths = watches.map((w, i) => w.stop() - baselines[i])
        const liveGrowths = (await Promise.all(nodes.map(liveBytes))).map((live, i) => live - liveBaselines[i])
        process.stdout.write(`# relay ${where}: ${mib(sent)} sent, ${mib(stuckAtSender())} of it held at the sender while the receiver is frozen; ` +
          `server RSS growth ${growths.map(mib).join(' and ')}, live memory growth ${liveGrowths.map(mib).join(' and ')}\n`)
        // What a server holds once its garbage is collected: the relay's
        // high-water mark (1 MiB) and the receiver's unsent output, not the
        // tens of MiB sent after the freeze.
        for (const growth of liveGrowths) assert.ok(growth < 8 * MiB, `server live memory grew by ${mib(growth)} while the sender was held back`)
        // RSS also holds Buffers already let go, each chunk's read and (across
        // nodes) its Redis message, until V8's next collection, which the
        // memory outside its heap may wait for until it reaches 64 MiB (seen
        // across nodes: up to 28 MiB, on a loaded machine)
        const rssAllowed = across ? 64 * MiB : 16 * MiB
        for (const growth of growths) assert.ok(growth < rssAllowed, `server RSS grew by ${mib(growth)} while the sender was held back`)
        // held back, not over any limit: the receiver keeps its address and streams
        for (const node of nodes) {
          const m = node === senderNode ? paused : await scrape(node.uri)
          assert.equal(sampleOr(m, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }), 0)
          assert.equal(sampleOr(m, 'rendezvous_peers'), across ? 1 : 2)
        }
        // the dial's two streams are counted where the dial was made
        assert.equal(sampleOr(paused, 'rendezvous_relayed_streams'), 2)

        receiver.thaw()
        send(sender, relayed.forward, [])
        const end = await receiver.next((e) => e.event === 'end', 'every byte reaches the receiver', 120_000)
        assert.deepEqual({ bytes: end.bytes, sha256: end.sha256, end: end.end }, { bytes: sent, sha256: hash.digest('hex'), end: true })
        const after = await untilScraped(senderNode, (m) => sampleOr(m, 'rendezvous_relay_paused_senders') === 0, 'the sender is read again')
        assert.equal(sampleOr(after, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }), 0)
      } finally {
        await cleanup.run()
      }
    })
  }
})

describe('a peer that vanishes without closing', () => {
  const INTERVAL_MS = 500
  const TIMEOUT_MS = 500
  // the heartbeat's own timers, then a loaded 2-core machine's scheduling and our 25 ms scrapes
  const MARGIN_MS = 2000

  for (const version of ['v2', 'v4'] as const) {
    const heartbeat = version === 'v2' ? 'Engine.IO v3: it stops pinging' : 'Engine.IO v4: it stops answering pings'
    it(`socket.io-client ${version} (${heartbeat}) is removed within pingIntervalMS + pingTimeoutMS: address released, streams ended on the other side`, async () => {
      const cleanup = new Cleanup()
      try {
        const cli = await startCli(['--disableCryptoChallenge', `--pingIntervalMS=${INTERVAL_MS}`, `--pingTimeoutMS=${TIMEOUT_MS}`])
        cleanup.add(async () => { await cli.stop('SIGKILL') })
        const other = await connect(cli.uri, 'v4')
        cleanup.add(async () => { await other.close() })
        const from = randomAddress(cli.port)
        await joinWithoutChallenge(other, from)
        const peer = await spawnPeer(cli.uri, randomAddress(cli.port), version, 'websocket')
        cleanup.add(peer.kill)
        const relayed = await dialProcess(other, from, peer)
        queue(other, relayed.forward, makeChunks(16, 64 * KiB))
        await peer.next((e) => e.event === 'data', 'the relay carries 1 MiB')
        const before = await untilScraped(cli, (m) => sampleOr(m, 'rendezvous_peers') === 2 && sampleOr(m, 'rendezvous_relayed_streams') === 2, 'both are joined and relayed')

        let endedAt = 0
        const ended = Promise.all([relayed.back.done, relayed.forwardEnded]).then((ends) => {
          endedAt = Date.now()
          return ends
        })
        const frozenAt = Date.now()
        peer.freeze()
        const released = await untilScraped(cli, (m) => sampleOr(m, 'rendezvous_peers') === 1, 'the vanished peer\'s address is released')
        const releasedAt = Date.now()
        const [back, forward] = await within(ended, 'the ends of both relayed streams')
        const tookMs = Math.max(releasedAt, endedAt) - frozenAt
        process.stdout.write(`# ${version}: removed ${releasedAt - frozenAt} ms after it froze, streams ended after ${endedAt - frozenAt} ms (limit ${INTERVAL_MS + TIMEOUT_MS + MARGIN_MS} ms)\n`)
        assert.equal(back.end, true)
        assert.deepEqual(forward, [true])
        assert.equal(sampleOr(released, 'rendezvous_relayed_streams'), 0)
        assert.equal(sampleOr(released, 'rendezvous_connections'), 1)
        // the heartbeat removed it, not a limit
        assert.equal(sampleOr(released, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }), sampleOr(before, 'rendezvous_connections_closed_total', { reason: UNSENT_REASON }))
        assert.ok(!(await joinWithoutChallenge(other, randomAddress(cli.port))).includes(peer.address), 'a new join\'s answer does not list it')
        assert.ok(tookMs <= INTERVAL_MS + TIMEOUT_MS + MARGIN_MS, `removed after ${tookMs} ms`)
      } finally {
        await cleanup.run()
      }
    })
  }
})
