/**
 * `--peerPolicy` with the CLI and real clients, the crypto challenge on: who
 * may join, and what a change of the file does to peers already joined.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { ERRORS } from '../src/index.js'
import { Cleanup } from './helpers/cleanup.js'
import { connect, type Client } from './helpers/clients.js'
import { health } from './helpers/http.js'
import { joinWithChallenge } from './helpers/join.js'
import { addressOf, libp2pIdentity, type Identity } from './helpers/keys.js'
import { assertConfigError, runCli, startCli, type CliServer } from './helpers/server.js'
import { relay } from './helpers/streams.js'
import { eventually, until, within } from './helpers/wait.js'

const cleanup = new Cleanup()
let dir = ''
let file = ''

/** Replaces the policy file at once (write, then rename), as config management does. */
async function writePolicy (text: string): Promise<void> {
  const temporary = join(dir, `.policy-${randomUUID()}`)
  await writeFile(temporary, text)
  await rename(temporary, file)
}

async function open (server: CliServer): Promise<Client> {
  const client = await connect(server.uri, 'v4')
  cleanup.add(async () => { await client.close() })
  return client
}

/** The answer to the first step of a join with the crypto challenge (the public key): its error, or null. */
async function refusal (client: Client, server: CliServer, identity: Identity): Promise<unknown> {
  const [err] = await client.request('ss-join', addressOf(identity.id, server.port), identity.publicKeyHex)
  return err
}

/** Both steps of the crypto challenge: the second join's error, or null once joined. */
async function joined (client: Client, server: CliServer, identity: Identity): Promise<unknown> {
  return (await joinWithChallenge(client, addressOf(identity.id, server.port), identity)).answer[0]
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'peer-policy-'))
  file = join(dir, 'peers.txt')
})
after(async () => {
  await cleanup.run()
  await rm(dir, { recursive: true, force: true })
})

describe('--peerPolicy at start', () => {
  it('an unreadable or malformed file exits 2 naming the option', async () => {
    assertConfigError(await runCli([`--peerPolicy=${join(dir, 'missing.txt')}`]), /^rendezvous: --peerPolicy: cannot read ".*missing\.txt" \(ENOENT\)$/)
    const bad = join(dir, 'bad.txt')
    await writeFile(bad, '[allow]\nQmNotAPeerId\n')
    assertConfigError(await runCli([], { PEER_POLICY: bad }), /^rendezvous: PEER_POLICY: ".*bad\.txt": line 2: "QmNotAPeerId" is not a peer id$/)
  })

  it('warns when the crypto challenge is disabled', async () => {
    await writePolicy('[deny]\n')
    const server = await startCli([`--peerPolicy=${file}`, '--disableCryptoChallenge'])
    cleanup.add(async () => { await server.stop('SIGKILL') })
    await until(() => /warning: --peerPolicy is set but the crypto challenge is disabled/.test(server.output().stderr), 'the warning on stderr')
    await server.stop()
  })
})

describe('--peerPolicy with the crypto challenge', () => {
  let server: CliServer
  let allowed: Identity
  let later: Identity
  let denied: Identity
  let stranger: Identity
  let allowedClient: Client
  let laterClient: Client

  before(async () => {
    [allowed, later, denied, stranger] = await Promise.all([libp2pIdentity('Ed25519'), libp2pIdentity('Ed25519'), libp2pIdentity('secp256k1'), libp2pIdentity('Ed25519')])
    // `later` in its CIDv1 form: the address has the base58btc form
    await writePolicy(`# test\n[allow]\n${allowed.id}\n${peerIdFromString(later.id).toCID().toString()}\n${denied.id}\n[deny]\n${denied.id}  # denied wins\n`)
    server = await startCli([`--peerPolicy=${file}`])
    cleanup.add(async () => { await server.stop('SIGKILL') })
  })

  it('a denied peer and one not allowed get Peer not allowed; allowed ones join', async () => {
    assert.equal(await refusal(await open(server), server, denied), ERRORS.PEER_NOT_ALLOWED)
    assert.equal(await refusal(await open(server), server, stranger), ERRORS.PEER_NOT_ALLOWED)
    allowedClient = await open(server)
    laterClient = await open(server)
    assert.equal(await joined(allowedClient, server, allowed), null)
    assert.equal(await joined(laterClient, server, later), null)
    assert.equal((await health(server.uri)).body.peers, 2)
  })

  it('after the file changes and SIGHUP, a joined peer now denied loses its address, its dials and its streams', async () => {
    const from = addressOf(allowed.id, server.port)
    const to = addressOf(later.id, server.port)
    const streams = await relay(allowedClient, from, laterClient, to)
    await writePolicy(`[allow]\n${allowed.id}\n[deny]\n${later.id}\n`)
    server.proc.kill('SIGHUP')
    const [atDialer, atListener] = await within(Promise.all([streams.atDialer.done, streams.atListener.done]), 'the relayed streams end')
    assert.equal(atDialer.end, true)
    assert.equal(atListener.end, true)
    await eventually(async () => (await health(server.uri)).body.peers, (peers) => peers === 1, 'the denied peer gone from /health')
    assert.deepEqual(await allowedClient.request('ss-dial', from, to, randomUUID()), [ERRORS.PEER_NOT_FOUND])
    assert.deepEqual(await laterClient.request('ss-dial', to, from, randomUUID()), [ERRORS.NOT_AUTHORIZED])
    assert.equal(await refusal(laterClient, server, later), ERRORS.PEER_NOT_ALLOWED)
    // its connection stays: the old client would not come back after a disconnect
    assert.equal(laterClient.socket.connected, true)
  })

  it('a bad file on reload is logged and the old policy kept', async () => {
    await writePolicy('[allow]\nnot-a-peer-id\n')
    server.proc.kill('SIGHUP')
    await until(() => /peer policy not reloaded, the previous one stays in force: .*line 2: "not-a-peer-id" is not a peer id/.test(server.output().stderr), 'the reload error on stderr')
    assert.equal(await refusal(laterClient, server, later), ERRORS.PEER_NOT_ALLOWED)
    assert.equal(await refusal(await open(server), server, stranger), ERRORS.PEER_NOT_ALLOWED)
    assert.equal((await health(server.uri)).body.peers, 1)
    assert.equal(await joined(await open(server), server, allowed), null)
  })

  it('a change of the file alone, without SIGHUP, is applied', async () => {
    await writePolicy(`[deny]\n${allowed.id}\n`)
    await eventually(async () => (await health(server.uri)).body.peers, (peers) => peers === 0, 'the now denied peer gone from /health')
    // deny only: everyone else may join again (on a new connection: this one's challenge for it was answered)
    assert.equal(await joined(await open(server), server, later), null)
    assert.equal(server.proc.exitCode, null)
  })
})
