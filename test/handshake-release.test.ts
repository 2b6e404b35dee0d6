/**
 * A connection lets go of its handshake request once Socket.IO has connected
 * it (engine.ts, `releaseHandshake`): what an idle peer costs is what its
 * connection keeps. Requests are counted with `v8.queryObjects`, which
 * collects garbage first, in this process, where the server runs; its
 * clients keep no request once connected (a count that included them would
 * only make the test stricter).
 */
import assert from 'node:assert/strict'
import { IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { queryObjects } from 'node:v8'
import type { Client, ClientVersion } from './helpers/clients.js'
import { joinedPeer, type Peer } from './helpers/join.js'
import { startServer } from './helpers/server.js'
import { makeChunks, relay, send, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

type Server = Awaited<ReturnType<typeof startServer>>
const PEERS_PER_KIND = 10
/** Requests that may be in flight besides the peers': none is expected, a few are allowed. */
const SLACK = 3

function requestsAlive (): number {
  return queryObjects(IncomingMessage, { format: 'count' })
}

/** The Engine.IO transport a client is on now, in either client generation. */
function transportOf (client: Client): string {
  return (client.socket as unknown as { io: { engine: { transport: { name: string } } } }).io.engine.transport.name
}

describe('what a connection keeps of its handshake request', () => {
  let server: Server
  const clients: Client[] = []
  before(async () => { server = await startServer({ cryptoChallenge: false }) })
  after(async () => {
    await Promise.all(clients.map(async (client) => { await client.close() }))
    await server.stop()
  })

  async function join (version: ClientVersion, extra?: Record<string, unknown>): Promise<Peer> {
    return await joinedPeer(server.url, { version, extra, opened: (client) => { clients.push(client) } })
  }

  it('nothing, for WebSocket peers of either client generation, which still relay', async () => {
    const before = requestsAlive()
    const joined: Peer[] = []
    for (const version of ['v2', 'v4'] as const) {
      for (let i = 0; i < PEERS_PER_KIND; i++) joined.push(await join(version))
    }
    const kept = requestsAlive() - before
    assert.ok(kept <= SLACK, `${kept} requests kept by ${joined.length} joined peers`)

    // a v2 peer dials a v4 peer through the server, as before
    const [dialer, listener] = [joined[0], joined[joined.length - 1]]
    const streams = await relay(dialer.client, dialer.address, listener.client, listener.address)
    const chunks = [...makeChunks(4, 1024)]
    await streams.dialerMaySend
    send(dialer.client, streams.forward, chunks)
    const received = await within(streams.atListener.done, 'the relayed stream at the listener')
    assert.equal(received.sha256, sha256(chunks))
    assert.equal(received.end, true)
  })

  it('nothing, for peers that open on polling and move to a WebSocket', async () => {
    const before = requestsAlive()
    const joined: Peer[] = []
    for (const version of ['v2', 'v4'] as const) {
      for (let i = 0; i < PEERS_PER_KIND; i++) joined.push(await join(version, { transports: ['polling', 'websocket'] }))
    }
    await until(() => joined.every(({ client }) => transportOf(client) === 'websocket'), 'every peer on its WebSocket')
    const kept = requestsAlive() - before
    assert.ok(kept <= SLACK, `${kept} requests kept by ${joined.length} upgraded peers`)
    // the server still knows each one's address after letting go of its request
    assert.equal(Object.keys(server.peers()).filter((a) => joined.some((p) => p.address === a)).length, joined.length)
  })
})
