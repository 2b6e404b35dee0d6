/**
 * How the server says goodbye: stopping, draining and its own limits close
 * the transport, never with a Socket.IO DISCONNECT, which socket.io-client
 * 2.x takes as final. Clients that reconnect come back to the server
 * restarted on the same port and carry on: join again, are announced,
 * discover, dial and are dialled. (PROTOCOL.md, "How clients take a server's
 * goodbye".)
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Options } from '../src/index.js'
import { Cleanup } from './helpers/cleanup.js'
import { CLIENT_KINDS, connect, type Client, type ClientVersion, type Transport } from './helpers/clients.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity, type Identity } from './helpers/keys.js'
import { startServer } from './helpers/server.js'
import { STREAM, makeChunks, relay, send, sha256 } from './helpers/streams.js'
import { until, within } from './helpers/wait.js'

/** What socket.io-client reports when the server sent a Socket.IO DISCONNECT: the client then never reconnects. */
const SERVER_DISCONNECT = 'io server disconnect'

/** A client that reconnects as libp2p-websocket-star's does (quickly here), with every disconnect reason recorded. */
interface Returning {
  client: Client
  identity: Identity
  address: string
  reasons: string[]
  /** Resolves at the next (re)connection. */
  reconnected: () => Promise<unknown[]>
}

async function returning (url: string, port: number, version: ClientVersion, transport: Transport, cleanup: Cleanup): Promise<Returning> {
  const client = await connect(url, version, transport, { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 200 })
  cleanup.add(() => { client.socket.disconnect(); return Promise.resolve() })
  const identity = await libp2pIdentity('Ed25519')
  const reasons: string[] = []
  client.socket.on('disconnect', (reason: string) => { reasons.push(reason) })
  return { client, identity, address: addressOf(identity.id, port), reasons, reconnected: async () => await client.next('connect') }
}

async function joined (peer: Returning): Promise<unknown[]> {
  const { answer: ack } = await joinWithChallenge(peer.client, peer.address, peer.identity)
  assert.equal(ack[0], null, `join of ${peer.address}: ${JSON.stringify(ack)}`)
  return ack
}

async function serverOn (port: number, cleanup: Cleanup, options: Options = {}): Promise<Awaited<ReturnType<typeof startServer>>> {
  const server = await startServer({ port, ...options })
  cleanup.add(async () => { await server.stop() })
  return server
}

/** Relays a few chunks each way between two joined peers and checks they arrive byte-exact. */
async function relaysBothWays (a: Returning, b: Returning): Promise<void> {
  const chunks = [...makeChunks(8, 4096)]
  const r = await relay(a.client, a.address, b.client, b.address)
  await r.dialerMaySend
  send(a.client, r.forward, chunks)
  await r.listenerMaySend
  send(b.client, r.back, chunks)
  for (const received of await Promise.all([r.atListener.done, r.atDialer.done])) {
    assert.deepEqual([received.bytes, received.sha256, received.end], [8 * 4096, sha256(chunks), true])
  }
}

describe('a server that stops closes transports, so clients come back to it restarted', () => {
  for (const { version, transport } of CLIENT_KINDS) {
    it(`${version} ${transport}: stop() is a transport close; the client reconnects to the restarted server, joins again through the challenge, is announced, discovers, dials and is dialled`, async () => {
      const cleanup = new Cleanup()
      try {
        const first = await serverOn(0, cleanup)
        const port = first.info.port
        const peer = await returning(first.url, port, version, transport, cleanup)
        await joined(peer)

        const back = peer.reconnected()
        await first.stop()
        await until(() => peer.reasons.length > 0, 'the client sees its connection close')
        assert.deepEqual(peer.reasons, ['transport close'])

        const second = await serverOn(port, cleanup)
        await within(back, 'the client reconnects to the restarted server')
        // the real client joins again on reconnect, challenge and all
        const [, , others] = await joined(peer)
        assert.deepEqual(others, [])
        assert.equal(second.peers()[peer.address], peer.client.socket.id)

        const newcomer = await returning(second.url, port, 'v4', 'websocket', cleanup)
        const [, , seen] = await joined(newcomer)
        assert.deepEqual(seen, [peer.address])
        await peer.client.discovers(newcomer.address)
        await relaysBothWays(peer, newcomer)
        await relaysBothWays(newcomer, peer)
        assert.ok(!peer.reasons.includes(SERVER_DISCONNECT))
      } finally {
        await cleanup.run()
      }
    })
  }

  it('shutdown(): every relayed stream ends on both sides before the transports close, and both peers come back', async () => {
    const cleanup = new Cleanup()
    try {
      const first = await serverOn(0, cleanup)
      const port = first.info.port
      const dialer = await returning(first.url, port, 'v2', 'polling', cleanup)
      const listener = await returning(first.url, port, 'v2', 'websocket', cleanup)
      await joined(dialer)
      await joined(listener)
      const r = await relay(dialer.client, dialer.address, listener.client, listener.address)
      await r.dialerMaySend
      // left open: the shutdown ends it
      send(dialer.client, r.forward, makeChunks(4, 1024), null)
      await until(() => r.atListener.received === 4096, 'the chunks reach the listener')

      // the order each peer sees: its stream's end first, then the close
      const order = (peer: Returning, name: string): string[] => {
        const seen: string[] = []
        peer.client.socket.on(`${STREAM}error.${name}`, (end: unknown) => { seen.push(`end ${String(end)}`) })
        peer.client.socket.on('disconnect', (reason: string) => { seen.push(reason) })
        return seen
      }
      const atListener = order(listener, r.forward)
      const atDialer = order(dialer, r.back)
      const back = Promise.all([dialer.reconnected(), listener.reconnected()])
      await first.shutdown(0)
      await until(() => atListener.length === 2 && atDialer.length === 2, 'both peers see the end and the close')
      assert.deepEqual(atListener, ['end true', 'transport close'])
      assert.deepEqual(atDialer, ['end true', 'transport close'])

      const second = await serverOn(port, cleanup)
      await within(back, 'both peers reconnect')
      await joined(dialer)
      await joined(listener)
      assert.deepEqual(Object.keys(second.peers()).sort(), [dialer.address, listener.address].sort())
      await relaysBothWays(dialer, listener)
    } finally {
      await cleanup.run()
    }
  })

  it('a returning peer takes its address from its own stale connection, even on a full server', async () => {
    const cleanup = new Cleanup()
    try {
      const server = await serverOn(0, cleanup, { maxPeers: 1 })
      const stale = await returning(server.url, server.info.port, 'v2', 'websocket', cleanup)
      await joined(stale)
      // the same peer on a new connection, while the server still holds the old one
      const fresh = await connect(server.url, 'v2', 'websocket')
      cleanup.add(async () => { await fresh.close() })
      const [err] = (await joinWithChallenge(fresh, stale.address, stale.identity)).answer
      assert.equal(err, null)
      assert.equal(server.peers()[stale.address], fresh.socket.id)
      assert.equal(stale.client.socket.connected, true, 'the stale connection is not cut for it')
    } finally {
      await cleanup.run()
    }
  })

  it('the join timeout closes the transport: a client that never joined may come back and try again', async () => {
    const cleanup = new Cleanup()
    try {
      const server = await serverOn(0, cleanup, { joinTimeoutMS: 200 })
      const idle = await returning(server.url, server.info.port, 'v2', 'websocket', cleanup)
      const back = idle.reconnected()
      await until(() => idle.reasons.length > 0, 'the idle connection is closed')
      assert.deepEqual(idle.reasons, ['transport close'])
      await within(back, 'the client reconnects')
      await joined(idle)
      assert.equal(server.peers()[idle.address], idle.client.socket.id)
    } finally {
      await cleanup.run()
    }
  })
})
