/** The peer policy file: its two formats, both peer-id forms, and what a bad file says. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { OptionError, start } from '../src/index.js'
import { allows, parsePolicy, readPolicy } from '../src/policy.js'
import { libp2pIdentity, randomPeerId } from './helpers/keys.js'

let ed25519 = ''
/** The same id as a CIDv1 (`bafz…`). */
let ed25519Cid = ''
const rsa = randomPeerId()
const other = randomPeerId()

before(async () => {
  ed25519 = (await libp2pIdentity('Ed25519')).id
  ed25519Cid = peerIdFromString(ed25519).toCID().toString()
  assert.match(ed25519Cid, /^bafz/)
})

/** Asserts that parsing `text` throws an error whose message matches `message`. */
function refuses (text: string, message: RegExp): void {
  assert.throws(() => parsePolicy(text), (err: unknown) => err instanceof Error && message.test(err.message))
}

describe('peer policy, text format', () => {
  it('reads [allow] and [deny] sections, comments and blank lines', () => {
    const rules = parsePolicy(`# who may join\n\n[allow]\n${ed25519}   # ours\n${rsa}\n\n[deny]\n  ${other}\n`)
    assert.deepEqual([...rules.allow].sort(), [ed25519, rsa].sort())
    assert.deepEqual([...rules.deny], [other])
  })

  it('takes both peer-id forms and matches either against the other', () => {
    const byCid = parsePolicy(`[allow]\n${ed25519Cid}\n`)
    assert.deepEqual([...byCid.allow], [ed25519])
    assert.equal(allows(byCid, ed25519), true)
    assert.equal(allows(parsePolicy(`[deny]\n${ed25519}\n`), ed25519Cid), false)
  })

  it('lets only the allowed join when allow lists anyone, and never the denied', () => {
    const rules = parsePolicy(`[allow]\n${ed25519}\n${rsa}\n[deny]\n${rsa}\n`)
    assert.equal(allows(rules, ed25519), true)
    assert.equal(allows(rules, rsa), false)
    assert.equal(allows(rules, other), false)
    assert.equal(allows(rules, 'not-a-peer-id'), false)
    const denyOnly = parsePolicy(`[deny]\n${rsa}\n`)
    assert.equal(allows(denyOnly, other), true)
    assert.equal(allows(denyOnly, rsa), false)
    assert.equal(allows(parsePolicy('# nothing yet\n'), other), true)
  })

  it('names the line of what it cannot read', () => {
    refuses(`${rsa}\n`, /^line 1: a peer id before any \[allow\] or \[deny\] section$/)
    refuses(`[allow]\n${rsa}\n[block]\n`, /^line 3: unknown section \[block\]/)
    refuses('[deny]\n\nQmNotAPeerId\n', /^line 3: "QmNotAPeerId" is not a peer id$/)
    refuses(`[allow]\n${rsa} ${other}\n`, /^line 2: one peer id per line$/)
  })
})

describe('peer policy, JSON format', () => {
  it('reads allow and deny arrays, either optional', () => {
    const rules = parsePolicy(JSON.stringify({ allow: [ed25519Cid, rsa], deny: [other] }))
    assert.deepEqual([...rules.allow].sort(), [ed25519, rsa].sort())
    assert.deepEqual([...rules.deny], [other])
    assert.equal(parsePolicy(`  {"deny": ["${rsa}"]}`).allow.size, 0)
  })

  it('says what is wrong', () => {
    refuses('{ "allow": [', /^not valid JSON/)
    refuses('{ "allow": "x" }', /^"allow" must be an array of peer ids$/)
    refuses('{ "allow": [1] }', /^"allow"\[0\] must be a string$/)
    refuses('{ "deny": ["nope"] }', /^"deny"\[0\]: "nope" is not a peer id$/)
    refuses('{ "block": [] }', /^unknown key "block"/)
  })
})

describe('peer policy file at start', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'policy-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('reads the file, and names it in its errors', async () => {
    const good = join(dir, 'good.txt')
    await writeFile(good, `[deny]\n${rsa}\n`)
    assert.deepEqual([...readPolicy(good).deny], [rsa])
    const bad = join(dir, 'bad.json')
    await writeFile(bad, '{"allow": ["x"]}')
    assert.throws(() => readPolicy(bad), /bad\.json": "allow"\[0\]: "x" is not a peer id$/)
    assert.throws(() => readPolicy(join(dir, 'missing')), /^Error: cannot read ".*missing" \(ENOENT\)$/)
  })

  it('start() refuses a bad file with an OptionError naming peerPolicy', async () => {
    await assert.rejects(start({ port: 0, host: '127.0.0.1', peerPolicy: join(dir, 'missing') }), (err: unknown) => {
      assert.ok(err instanceof OptionError, String(err))
      assert.equal(err.option, 'peerPolicy')
      return true
    })
  })
})
