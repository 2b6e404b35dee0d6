/**
 * Every released line of the real old client (0.8.1, 0.9.1, 0.10.2, and
 * libp2p-websocket-star-multi 0.4.4) comes back by itself when the CLI is
 * stopped (SIGTERM, SIGINT: a graceful drain; SIGKILL) and started again on
 * the same port: its socket sees a transport close, never a Socket.IO
 * DISCONNECT, reconnects, joins again (redoing the crypto challenge when the
 * server runs it), is rediscovered by a peer of the new server, discovers a
 * peer that joins after it, dials it and is dialled by it.
 *
 * One CLI per challenge mode holds all four clients at once and is restarted
 * with each signal in turn; the two modes run side by side.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { inspect } from 'node:util'
import pull from 'pull-stream'
import { Cleanup } from './helpers/cleanup.js'
import { connect } from './helpers/clients.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity } from './helpers/keys.js'
import { OLD_CLIENTS, oldPeer, type OldClient, type OldPeer } from './helpers/libp2p.js'
import { sample, scrape } from './helpers/metrics.js'
import { freePort } from './helpers/ports.js'
import { startCli, type CliServer } from './helpers/server.js'
import { until, within } from './helpers/wait.js'

const CLIENTS = Object.keys(OLD_CLIENTS) as OldClient[]
const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGKILL']

/** `from` dials `to`, which echoes: one message goes there and back, and the connection ends on both sides. */
async function roundTrip (from: OldPeer, to: OldPeer): Promise<void> {
  const incoming = to.incoming.length
  const conn = await from.dial(to.address)
  const message = Buffer.from(`${from.id} to ${to.id}`)
  const echoed = await within(new Promise<Buffer[]>((resolve, reject) => {
    pull(pull.values([message]), conn, pull.collect((err, chunks) => {
      if (err !== null && err !== undefined) reject(err instanceof Error ? err : new Error(inspect(err)))
      else resolve(chunks)
    }))
  }), `the echo from ${to.address} to ${from.address}`)
  assert.deepEqual(Buffer.concat(echoed), message)
  assert.equal(to.incoming.length, incoming + 1, `${to.address} was handed the connection`)
}

// the parent runs the two modes side by side; each mode restarts its one CLI in turn
describe('every released old client comes back by itself to the CLI restarted on the same port', { concurrency: true }, () => {
  for (const challenge of [true, false]) {
    const mode = `challenge=${challenge ? 'on' : 'off'}`
    // suites inherit their parent's concurrency: the restarts of one CLI go one after another
    describe(`crypto challenge ${challenge ? 'on' : 'off'}`, { concurrency: false }, () => {
      const args = challenge ? [] : ['--disableCryptoChallenge']
      const cleanup = new Cleanup()
      let port = 0
      let cli: CliServer | undefined
      const peers = new Map<OldClient, OldPeer>()
      /** A fresh 0.10.2 peer for each restart, to join once every old client is back. */
      const newcomers: OldPeer[] = []

      before(async () => {
        port = await freePort()
        cli = await startCli([`--port=${port}`, ...args])
        cleanup.add(async () => { await cli?.stop('SIGKILL') })
        const options = { port, allowJoinWithDisabledChallenge: !challenge }
        // RSA keys take a while: make them all at once
        const made = await Promise.all([
          ...CLIENTS.map(async (client) => await oldPeer({ ...options, client })),
          ...SIGNALS.map(async () => await oldPeer(options))
        ])
        for (const peer of made) peer.onConnection((conn) => { pull(conn, conn) })
        newcomers.push(...made.slice(CLIENTS.length))
        for (const [i, client] of CLIENTS.entries()) {
          const peer = made[i]
          cleanup.add(async () => { await peer.close() })
          await peer.listen({ port })
          peers.set(client, peer)
        }
      })

      after(async () => { await cleanup.run() })

      for (const [round, signal] of SIGNALS.entries()) {
        it(`${signal}: each client sees a transport close, rejoins the restarted CLI by itself, is rediscovered, discovers a newcomer, dials it and is dialled`, async (t) => {
          const each = new Cleanup()
          try {
            const all = CLIENTS.map((client) => [client, peers.get(client) as OldPeer] as const)
            const was = new Map(all.map(([client, peer]) => [client, { disconnects: peer.disconnects.length, reconnects: peer.reconnects }]))

            const exit = await (cli as CliServer).stop(signal)
            if (signal === 'SIGKILL') {
              assert.equal(exit.signal, 'SIGKILL')
            } else {
              assert.equal(exit.code, 0, `exit after ${signal}: ${JSON.stringify(exit)}`)
              // nothing was left relayed (the last round's dials ended), so the drain did not wait
              assert.match(exit.stdout, new RegExp(`Received ${signal}, stopping\\nRendezvous server stopped\\n`))
            }
            // a graceful stop closes the transport as SIGKILL does, never with a DISCONNECT, which would strand them
            await Promise.all(all.map(async ([client, peer]) => {
              await until(() => peer.disconnects.length > (was.get(client)?.disconnects ?? 0), `${client} to see its connection close`)
            }))
            for (const [client, peer] of all) {
              assert.deepEqual(peer.disconnects.slice(was.get(client)?.disconnects), ['transport close'], `${client} after ${signal}`)
            }

            cli = await startCli([`--port=${port}`, ...args])
            const listening = Date.now()

            // a peer of the new server at once: when did it first hear of each old client?
            const observer = await connect(cli.uri, 'v4', 'websocket')
            each.add(async () => { await observer.close() })
            const heardAt = new Map<string, number>()
            observer.socket.on('ws-peer', (address: string) => { if (!heardAt.has(address)) heardAt.set(address, Date.now()) })
            const identity = await libp2pIdentity('Ed25519')
            const observerAddress = addressOf(identity.id, port)
            const [err, , listed] = challenge ? (await joinWithChallenge(observer, observerAddress, identity)).answer : await observer.request('ss-join', observerAddress, '')
            assert.equal(err, null)
            // those back before the observer joined are in its join answer
            const answered = Date.now()
            const early = new Set(listed as string[])
            for (const address of early) heardAt.set(address, answered)

            const seconds = await Promise.all(all.map(async ([, peer]) => {
              try {
                if (!early.has(peer.address)) await observer.discovers(peer.address)
                return ((heardAt.get(peer.address) as number) - listening) / 1000
              } catch {
                return undefined
              }
            }))
            for (const [i, [client, peer]] of all.entries()) {
              const s = seconds[i]
              const when = s === undefined ? '' : ` ${s.toFixed(2)} s${early.has(peer.address) ? ' (in the join answer)' : ''}`
              t.diagnostic(`reconnect ${client} ${signal} ${mode} rejoined=${s === undefined ? 'no' : 'yes'}${when}`)
            }
            for (const [i, [client]] of all.entries()) assert.notEqual(seconds[i], undefined, `${client} rejoined after ${signal}`)
            for (const [client, peer] of all) {
              // once each: it reconnected, and joined again without an error
              assert.equal(peer.reconnects, (was.get(client)?.reconnects ?? 0) + 1, `${client} reconnected once`)
              assert.deepEqual(peer.errors, [], `${client} joined again without an error`)
            }

            // a newcomer after them all: its join answer lists every one, and each hears of it
            const newcomer = newcomers[round]
            each.add(async () => { await newcomer.close() })
            await newcomer.listen(cli)
            assert.deepEqual(new Set(newcomer.fromJoinAck), new Set([observerAddress, ...all.map(([, peer]) => peer.address)]))
            await Promise.all(all.map(async ([, peer]) => { await peer.discovers(newcomer.address) }))
            // each address once, no stale leftovers
            assert.equal(sample(await scrape(cli.uri), 'rendezvous_peers'), CLIENTS.length + 2)

            // and relay works both ways through the restarted server
            for (const [, peer] of all) {
              await roundTrip(peer, newcomer)
              await roundTrip(newcomer, peer)
            }
          } finally {
            await each.run()
          }
        })
      }
    })
  }
})
