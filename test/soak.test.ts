/**
 * The soak, short enough for CI: cycles of peers connecting, joining with
 * and without the crypto challenge, relaying, and leaving every way a peer
 * can leave, after which the server holds nothing more than before. The long
 * variant is `npm run soak` (test/soak-long.ts).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { describeResult, soak } from './helpers/soak.js'

const CYCLES = 10
const CLIENTS = 20

describe('soak', () => {
  it(`leaves no table entry, timer or heap behind after ${CYCLES} cycles of ${CLIENTS} peers`, async (t) => {
    const result = await soak({ cycles: CYCLES, clients: CLIENTS })
    const [figures, ...details] = describeResult(result)
    // the figures, as a line of their own in the runner's output ('# soak: …' in TAP)
    console.log(figures)
    for (const line of details) t.diagnostic(line)
    assert.equal(result.cycles, CYCLES)
    assert.deepEqual(result.failures, [])
    for (const tables of result.tables) assert.ok(Object.values(tables).every((n) => n === 0), JSON.stringify(tables))
  })
})
