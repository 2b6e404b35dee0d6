/**
 * Certificates rotate without a restart: SIGHUP, or a change of the `--key` /
 * `--cert` files, gives new TLS connections the new certificate while open
 * connections carry on; a bad file is logged and the old certificate kept.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { connect, type Client } from './helpers/clients.js'
import { joinWithoutChallenge } from './helpers/join.js'
import { randomAddress } from './helpers/keys.js'
import { startCli, type CliServer } from './helpers/server.js'
import { eventually, until, within } from './helpers/wait.js'

const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' })
const noOpenssl = openssl.error !== undefined || openssl.status !== 0 ? 'openssl is not installed: TLS tests skipped' : false

/** The serial number of the certificate a new TLS connection to `port` is shown, in upper-case hex. */
async function servedSerial (port: number): Promise<string> {
  return await within(new Promise<string>((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toUpperCase()
      socket.end()
      resolve(serial)
    })
    socket.on('error', reject)
  }), `a TLS connection to ${port}`)
}

describe('certificate rotation', { skip: noOpenssl }, () => {
  let dir = ''
  const servers: CliServer[] = []
  const clients: Client[] = []
  /** Key and certificate `n`, with serial number `n`001 (hex). */
  const pair = (n: number): { key: string, cert: string, serial: string } => ({ key: join(dir, `key${n}.pem`), cert: join(dir, `cert${n}.pem`), serial: `${n}001` })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rendezvous-rotation-'))
    for (const n of [1, 2]) {
      const { key, cert, serial } = pair(n)
      const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-set_serial', `0x${serial}`]
      const result = spawnSync('openssl', args, { encoding: 'utf8' })
      assert.equal(result.status, 0, `openssl ${args.join(' ')}: ${result.stderr}`)
    }
  })
  after(async () => {
    await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
    await Promise.all(servers.splice(0).map(async (s) => { await s.stop('SIGKILL') }))
    await rm(dir, { recursive: true, force: true })
  })

  /** A server on `key`/`cert`, and a joined WSS client whose disconnection fails the test. */
  async function serve (key: string, cert: string): Promise<{ server: CliServer, client: Client, disconnected: () => boolean }> {
    const server = await startCli(['--key', key, '--cert', cert, '--disableCryptoChallenge'])
    servers.push(server)
    const client = await connect(server.uri, 'v4', 'websocket', { rejectUnauthorized: false })
    clients.push(client)
    let gone = false
    client.socket.on('disconnect', () => { gone = true })
    await joinWithoutChallenge(client, randomAddress(server.port))
    return { server, client, disconnected: () => gone }
  }

  /** Pair 1 copied into a fresh directory `name`, and `serve` on those files. */
  async function serveCopies (name: string): Promise<{ key: string, cert: string, server: CliServer, client: Client, disconnected: () => boolean }> {
    const live = join(dir, name)
    await mkdir(live)
    const key = join(live, 'key.pem')
    const cert = join(live, 'cert.pem')
    await copyFile(pair(1).key, key)
    await copyFile(pair(1).cert, cert)
    return { key, cert, ...await serve(key, cert) }
  }

  async function serves (server: CliServer, serial: string, what: string): Promise<void> {
    await eventually(async () => await servedSerial(server.port), (s) => s === serial, what, { everyMs: 50, seen: (s) => `serving ${s}` })
  }

  it('SIGHUP serves the new certificate to new connections, and the open one carries on', async () => {
    // the flags name symlinks into another directory: the files change where no watcher looks, so only SIGHUP can reload them
    const live = join(dir, 'hup')
    const target = join(dir, 'hup-target')
    await mkdir(live)
    await mkdir(target)
    await copyFile(pair(1).key, join(target, 'key.pem'))
    await copyFile(pair(1).cert, join(target, 'cert.pem'))
    await symlink(join(target, 'key.pem'), join(live, 'key.pem'))
    await symlink(join(target, 'cert.pem'), join(live, 'cert.pem'))
    const { server, client, disconnected } = await serve(join(live, 'key.pem'), join(live, 'cert.pem'))
    assert.equal(await servedSerial(server.port), pair(1).serial)

    await copyFile(pair(2).key, join(target, 'key.pem'))
    await copyFile(pair(2).cert, join(target, 'cert.pem'))
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.equal(await servedSerial(server.port), pair(1).serial, 'nothing reloads before the signal')
    server.proc.kill('SIGHUP')
    await serves(server, pair(2).serial, 'the new certificate is served after SIGHUP')

    await joinWithoutChallenge(client, randomAddress(server.port), ' after the reload')
    assert.equal(disconnected(), false, 'the open connection was not dropped')
    assert.equal(server.proc.exitCode, null)
  })

  it('a bad file is logged and the old certificate kept; a good one then loads', async () => {
    const { key, cert, server, client, disconnected } = await serveCopies('bad')

    await writeFile(cert, 'not a certificate\n')
    server.proc.kill('SIGHUP')
    await until(() => /certificates not reloaded/.test(server.output().stderr), 'the garbage certificate is logged')
    assert.equal(await servedSerial(server.port), pair(1).serial, 'the old certificate is still served')

    // the key of pair 2 with the certificate of pair 1: a mismatched pair
    await copyFile(pair(1).cert, cert)
    await copyFile(pair(2).key, key)
    const logged = server.output().stderr.split('certificates not reloaded').length
    server.proc.kill('SIGHUP')
    await until(() => server.output().stderr.split('certificates not reloaded').length > logged, 'the mismatched key is logged')
    assert.equal(await servedSerial(server.port), pair(1).serial, 'the old certificate is still served')

    await copyFile(pair(2).cert, cert)
    server.proc.kill('SIGHUP')
    await serves(server, pair(2).serial, 'a good pair loads after bad ones')
    await joinWithoutChallenge(client, randomAddress(server.port), ' after the reloads')
    assert.equal(disconnected(), false)
    assert.equal(server.proc.exitCode, null)
  })

  it('a change of the files reloads them without a signal', async () => {
    const { key, cert, server, client, disconnected } = await serveCopies('watched')
    assert.equal(await servedSerial(server.port), pair(1).serial)

    await copyFile(pair(2).key, key)
    await copyFile(pair(2).cert, cert)
    await serves(server, pair(2).serial, 'the changed files are served')
    await joinWithoutChallenge(client, randomAddress(server.port), ' after the reload')
    assert.equal(disconnected(), false)
  })
})
