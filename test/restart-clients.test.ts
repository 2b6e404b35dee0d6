/**
 * Every released line of the real old client comes back by itself when the
 * server is restarted on the same port, whatever the signal: it reconnects,
 * joins again (redoing the crypto challenge), is rediscovered, discovers a
 * peer that joined after the restart, and can dial and be dialled.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connect, type Client } from './helpers/clients.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity } from './helpers/keys.js'
import { OLD_CLIENTS, oldPeer, type OldClient, type OldPeer } from './helpers/libp2p.js'
import { freePort } from './helpers/ports.js'
import { startCli, type CliServer } from './helpers/server.js'
import { within } from './helpers/wait.js'

const CLIENTS = Object.keys(OLD_CLIENTS) as OldClient[]
const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGKILL']
/** Short, so that the clients that do not list the join answer's peers (0.8, 0.9) hear the newcomer soon. */
const REFRESH_MS = 1000

for (const challenge of [true, false]) {
  describe(`old clients come back after a restart, crypto challenge ${challenge ? 'on' : 'off'}`, () => {
    const args = [`--refreshPeerListIntervalMS=${REFRESH_MS}`, ...(challenge ? [] : ['--disableCryptoChallenge'])]
    let port: number
    let cli: CliServer | undefined
    const peers = new Map<OldClient, OldPeer>()
    const probes: Client[] = []

    before(async () => {
      port = await freePort()
      cli = await startCli([`--port=${port}`, ...args])
      for (const client of CLIENTS) {
        const peer = await oldPeer({ client, port, allowJoinWithDisabledChallenge: !challenge })
        await peer.listen({ port })
        peers.set(client, peer)
      }
    })

    after(async () => {
      for (const probe of probes) await probe.close()
      for (const peer of peers.values()) await peer.close().catch(() => {})
      await cli?.stop('SIGKILL')
    })

    for (const signal of SIGNALS) {
      it(`${signal}: every client rejoins the server restarted on the same port and discovers a peer that joined after it`, async (t) => {
        const exit = await (cli as CliServer).stop(signal)
        if (signal === 'SIGKILL') assert.equal(exit.signal, 'SIGKILL')
        else assert.equal(exit.code, 0, `exit after ${signal}: ${exit.stderr}`)
        cli = await startCli([`--port=${port}`, ...args])
        const listening = Date.now()

        // a peer that joins the new server at once, and hears each client as it rejoins
        const probe = await connect(cli.uri, 'v4', 'websocket')
        probes.push(probe)
        const identity = await libp2pIdentity('Ed25519')
        const address = addressOf(identity.id, port)
        const [err] = challenge ? await joinWithChallenge(probe, address, identity) : await probe.request('ss-join', address, '')
        assert.equal(err, null)

        await Promise.all(CLIENTS.map(async (client) => {
          const peer = peers.get(client) as OldPeer
          await within(probe.discovers(peer.address), `${client} to rejoin after ${signal}`)
          const seconds = (Date.now() - listening) / 1000
          await peer.discovers(address)
          t.diagnostic(`reconnect ${client} ${signal} challenge=${challenge ? 'on' : 'off'} rejoined=yes ${seconds.toFixed(2)} s`)
        }))
        assert.deepEqual(peers.get('0.10.2')?.errors, [])

        // and they dial each other through the new server, both ways
        const current = peers.get('0.10.2') as OldPeer
        for (const client of CLIENTS.filter((c) => c !== '0.10.2')) {
          const other = peers.get(client) as OldPeer
          const incoming = other.incoming.length
          await other.dial(current.address)
          await current.dial(other.address)
          assert.equal(other.incoming.length, incoming + 1, `${client} was dialled`)
        }
      })
    }
  })
}
