/**
 * `--trustProxy`: behind the nginx of docker-compose.yml the per-address
 * limit, the logs and the admin view have the address nginx forwards, and a
 * forged X-Forwarded-For from a peer that is not a trusted proxy changes
 * nothing; with `--proxyHeader=forwarded` the address comes from RFC 7239's
 * `Forwarded` instead, and X-Forwarded-For is ignored.
 */
import assert from 'node:assert/strict'
import { Agent } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client, type Transport } from './helpers/clients.js'
import { composeTrustProxy, NO_NGINX, startNginx, type NginxProcess } from './helpers/nginx.js'
import { request } from './helpers/http.js'
import { startCli, startServer } from './helpers/server.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { until } from './helpers/wait.js'

const TOKEN = 'public-proxy-admin-token'

/** The client addresses the admin view lists for the joined peers of the server at `url`. */
async function listedAddresses (url: string): Promise<string[]> {
  const res = await request(`${url}/admin/peers`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.equal(res.status, 200, res.body)
  return (JSON.parse(res.body) as { peers: Array<{ clientAddress: string }> }).peers.map((p) => p.clientAddress).sort()
}

/** socket.io-client 4.x options for a client whose TCP connections start from `localAddress`. */
function from (localAddress: string, cleanup: Cleanup): Record<string, unknown> {
  const agent = new Agent({ localAddress })
  cleanup.add(() => { agent.destroy(); return Promise.resolve() })
  return { agent }
}

async function refused (url: string, transport: Transport, extra: Record<string, unknown>): Promise<void> {
  await assert.rejects(connect(url, 'v4', transport, extra))
}

for (const transport of ['websocket', 'polling'] as const) {
  describe(`--trustProxy behind nginx, over ${transport}`, { skip: NO_NGINX }, () => {
    const cleanup = new Cleanup()
    let server: Awaited<ReturnType<typeof startServer>> | undefined
    let nginx: NginxProcess | undefined
    before(async () => {
      // as docker-compose.yml sets it for the nodes behind this nginx
      server = await startServer({ trustProxy: composeTrustProxy(), maxConnectionsPerIP: 1, adminToken: TOKEN, cryptoChallenge: false })
      const started = server
      cleanup.add(async () => { await started.stop() })
      // the compose file has three upstream servers: all three are this one
      nginx = await startNginx([server.info.port, server.info.port, server.info.port])
      const proxy = nginx
      cleanup.add(async () => { await proxy.stop() })
    })
    after(async () => { await cleanup.run() })

    it('counts each client by the address nginx forwards: 127.0.0.2 and 127.0.0.3 both get in, a second 127.0.0.2 does not', async () => {
      assert.ok(server !== undefined && nginx !== undefined)
      const clients: Client[] = []
      cleanup.add(async () => { await Promise.all(clients.map(async (c) => { await c.close() })) })
      clients.push(await connect(nginx.url, 'v4', transport, from('127.0.0.2', cleanup)))
      clients.push(await connect(nginx.url, 'v4', transport, from('127.0.0.3', cleanup)))
      // every connection reaches the server from nginx's 127.0.0.1: counted by that, the second would be refused
      assert.equal(server.stats().remoteAddresses, 2)
      await refused(nginx.url, transport, from('127.0.0.2', cleanup))
      assert.equal(server.stats().remoteAddresses, 2)
      // the operator sees them by the same addresses
      for (const c of clients) await joinWithoutChallenge(c, randomAddress())
      assert.deepEqual(await listedAddresses(server.url), ['127.0.0.2', '127.0.0.3'])
    })
  })

  describe(`--trustProxy and a forged X-Forwarded-For sent straight to the server, over ${transport}`, () => {
    const cleanup = new Cleanup()
    after(async () => { await cleanup.run() })

    it('is ignored from a peer that is not a trusted proxy: the limit counts its real address', async () => {
      const server = await startServer({ trustProxy: '10.0.0.1', maxConnectionsPerIP: 1 })
      cleanup.add(async () => { await server.stop() })
      const first = await connect(server.url, 'v4', transport, { extraHeaders: { 'X-Forwarded-For': '203.0.113.1' } })
      cleanup.add(async () => { await first.close() })
      await refused(server.url, transport, { extraHeaders: { 'X-Forwarded-For': '203.0.113.2' } })
      assert.equal(server.stats().remoteAddresses, 1)
    })
  })
}

describe('--proxyHeader=forwarded', () => {
  const cleanup = new Cleanup()
  after(async () => { await cleanup.run() })

  it('takes the client address from Forwarded (in the logs, the limits and the admin view) and ignores X-Forwarded-For', async () => {
    const cli = await startCli(['--trustProxy=loopback', '--proxyHeader=forwarded', '--disableCryptoChallenge', '--maxConnectionsPerIP=1'], { ADMIN_TOKEN: TOKEN, DEBUG: 'rendezvous:socket' })
    cleanup.add(async () => { await cli.stop('SIGKILL') })
    const headers = { Forwarded: 'for=198.51.100.7;proto=https, for="[2001:db8::1]:4711"', 'X-Forwarded-For': '203.0.113.9' }
    const first = await connect(cli.uri, 'v4', 'websocket', { extraHeaders: headers })
    cleanup.add(async () => { await first.close() })
    // a second connection from the same forwarded address is over the limit; one from another is not
    await refused(cli.uri, 'websocket', { extraHeaders: headers })
    const second = await connect(cli.uri, 'v4', 'websocket', { extraHeaders: { Forwarded: 'for=198.51.100.8' } })
    cleanup.add(async () => { await second.close() })
    // malformed: ignored, the TCP peer is the client
    const third = await connect(cli.uri, 'v4', 'websocket', { extraHeaders: { Forwarded: 'for=="' } })
    cleanup.add(async () => { await third.close() })
    for (const c of [first, second, third]) await joinWithoutChallenge(c, randomAddress())
    assert.deepEqual(await listedAddresses(cli.uri), ['127.0.0.1', '198.51.100.8', '2001:db8::1'])
    await until(() => /connected over websocket from 2001:db8::1\n/.test(cli.output().stderr), 'the log line with the forwarded address')
  })
})
