/**
 * What each relay carries: the test helpers' pseudo-random chunks, shifted by
 * the pair's number so that no two relays carry the same bytes (a stream
 * delivered to the wrong receiver fails its check).
 */
import { makeChunks, sha256 } from '../test/helpers/streams.js'

export function * chunksOf (pair: number, count: number, chunkBytes: number): Generator<Buffer> {
  let skip = pair
  for (const chunk of makeChunks(count + pair, chunkBytes)) {
    if (skip > 0) { skip--; continue }
    yield chunk
  }
}

/** The sha256 the receiver of `pair` must report. */
export function expectedSha256 (pair: number, count: number, chunkBytes: number): string {
  return sha256(chunksOf(pair, count, chunkBytes))
}
