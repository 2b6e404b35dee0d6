/** The README documents every option and metric the server has. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { OPTION_SPECS } from '../src/index.js'
import { scrape } from './helpers/metrics.js'
import { startServer } from './helpers/server.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('names every command-line flag, environment variable and start() option', () => {
    for (const spec of OPTION_SPECS) {
      assert.ok(readme.includes(`\`--${spec.flag}\``), `README lacks --${spec.flag}`)
      assert.ok(readme.includes(`\`${spec.env}\``), `README lacks ${spec.env}`)
      assert.ok(readme.includes(`\`${spec.key}\``), `README lacks the start() option ${spec.key}`)
    }
  })

  it('describes every rendezvous_* metric the server exports', async () => {
    const server = await startServer({ metrics: true })
    try {
      const { families } = await scrape(server.url)
      const ours = [...families.keys()].filter((name) => name.startsWith('rendezvous_'))
      assert.ok(ours.length >= 17)
      for (const name of ours) assert.ok(readme.includes(`| \`${name}\` |`), `README lacks a row for ${name}`)
    } finally {
      await server.stop()
    }
  })

  it('shows the test command that .ci/run runs', () => {
    const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8')
    assert.match(ci, /^npm test$/m)
    assert.match(readme, /^npm test\b/m)
  })
})
