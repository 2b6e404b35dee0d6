/**
 * WebSocket frames as a client writes them (RFC 6455, 5.2): masked with a
 * random key unless told otherwise, for tests that put bytes on the wire
 * themselves.
 */
import { randomBytes } from 'node:crypto'
import { OPCODE } from '../../src/chunk-frames.js'

export interface FrameOptions {
  fin?: boolean
  masked?: boolean
  /** RSV bits, as they sit in the first byte (0x40, 0x20, 0x10). */
  rsv?: number
}

export function clientFrame (opcode: number, payload: Buffer | string, { fin = true, masked = true, rsv = 0 }: FrameOptions = {}): Buffer {
  const data = Buffer.from(payload)
  const length = data.length
  const head = [(fin ? 0x80 : 0) | rsv | opcode]
  const maskBit = masked ? 0x80 : 0
  if (length < 126) head.push(maskBit | length)
  else if (length < 0x10000) head.push(maskBit | 126, length >> 8, length & 0xff)
  else {
    const size = Buffer.alloc(8)
    size.writeBigUInt64BE(BigInt(length))
    head.push(maskBit | 127, ...size)
  }
  if (!masked) return Buffer.concat([Buffer.from(head), data])
  const mask = randomBytes(4)
  const body = Buffer.from(data)
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3]
  return Buffer.concat([Buffer.from(head), mask, body])
}

/** The header message of a relayed chunk on `event`, as both client generations write it. */
export function chunkHeader (event: string): string {
  return `451-["${event}",{"_placeholder":true,"num":0}]`
}

/**
 * A relayed chunk as a client writes it: the header, then the bytes, behind
 * Engine.IO 3's type byte for socket.io-client 2.x (`eio3`), as they are for 4.x.
 */
export function chunkFrames (event: string, bytes: Buffer, eio3 = true): Buffer[] {
  return [clientFrame(OPCODE.TEXT, chunkHeader(event)), clientFrame(OPCODE.BINARY, eio3 ? Buffer.concat([Buffer.from([4]), bytes]) : bytes)]
}
