/**
 * Preloaded (`node --import`) into the old server: `bufferutil` cannot be
 * found. It is this package's optional dependency, so the old server's ws
 * 7.x would pick it up from the shared node_modules; installed from npm on
 * its own, the old server never had it (ws lists it as an optional peer),
 * and the bench compares it as its operators ran it.
 */
import Module from 'node:module'

const loader = Module as unknown as { _resolveFilename: (this: unknown, request: string, ...rest: unknown[]) => string }
const resolve = loader._resolveFilename
loader._resolveFilename = function (request, ...rest) {
  if (request === 'bufferutil') throw Object.assign(new Error('bufferutil is hidden from the old server'), { code: 'MODULE_NOT_FOUND' })
  return resolve.call(this, request, ...rest)
}
