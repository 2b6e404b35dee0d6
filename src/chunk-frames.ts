/**
 * Relayed chunks taken out of a websocket peer's incoming bytes before `ws`
 * reads them (RFC 6455, 5.2). A relayed chunk is two frames: a text frame
 * with its Socket.IO header, then a binary frame with the chunk (behind
 * Engine.IO 3's type byte). Both are recognised here as they arrive, and the
 * chunk is handed on unmasked in place, in the pieces it arrived in: `ws`
 * would copy every frame that spans two socket reads, as each 64 KiB chunk
 * does. Every other byte goes to `ws` unchanged and in order, so it sees a
 * well-formed stream of its own and still finds every framing error itself.
 * engine.ts installs this on a connection (`tapStreamChunks`).
 */
import { createRequire } from 'node:module'
import { MAX_DIAL_ID_LENGTH } from './constants.js'
import { ChunkParts, STREAM_EVENT_PREFIX, type Chunk, type StreamEventName } from './protocol.js'

/**
 * The text message that opens a relayed chunk, as both client generations
 * write it: Engine.IO message (4), Socket.IO binary event (5) with one
 * attachment (1-), main namespace, no ack, the event's name, the placeholder.
 */
const CHUNK_HEADER_OPENING = Buffer.from(`451-["${STREAM_EVENT_PREFIX}`)
/** Where the event's name starts, past `451-["`. */
const CHUNK_HEADER_EVENT_AT = 6
const CHUNK_HEADER_CLOSING = Buffer.from('",{"_placeholder":true,"num":0}]')
/** Longer headers are left to Socket.IO: a stream's name is two dial ids and a little more. */
const MAX_CHUNK_HEADER_BYTES = 2 * MAX_DIAL_ID_LENGTH + 64
/** Engine.IO 3's type byte of a binary message: 4 (message). */
const EIO3_MESSAGE_TYPE = 4

/** The opcodes of RFC 6455, 5.2, for every part of the server that reads or writes frames. */
export const OPCODE = { CONTINUATION: 0x00, TEXT: 0x01, BINARY: 0x02, CLOSE: 0x08, PING: 0x09, PONG: 0x0a } as const

/**
 * The stream event a chunk's header message names, if it is written exactly
 * as the clients write it and the name needs no JSON unescaping; anything
 * else is left to Socket.IO's decoder.
 */
export function chunkEventOf (header: Buffer): StreamEventName | undefined {
  const end = header.length - CHUNK_HEADER_CLOSING.length
  if (end <= CHUNK_HEADER_OPENING.length || header.length > MAX_CHUNK_HEADER_BYTES) return undefined
  if (header.compare(CHUNK_HEADER_OPENING, 0, CHUNK_HEADER_OPENING.length, 0, CHUNK_HEADER_OPENING.length) !== 0) return undefined
  if (header.compare(CHUNK_HEADER_CLOSING, 0, CHUNK_HEADER_CLOSING.length, end) !== 0) return undefined
  // printable ASCII without the quote and backslash that JSON would have escaped
  for (let i = CHUNK_HEADER_OPENING.length; i < end; i++) {
    const byte = header[i]
    if (byte < 0x20 || byte > 0x7e || byte === 0x22 || byte === 0x5c) return undefined
  }
  return header.toString('latin1', CHUNK_HEADER_EVENT_AT, end) as StreamEventName
}

type Unmask = (buffer: Buffer, mask: Buffer) => void

/** `bufferutil`'s native unmasking when it is installed (it is optional, as for `ws`); a loop otherwise. */
const nativeUnmask: Unmask | undefined = (() => {
  try {
    return (createRequire(import.meta.url)('bufferutil') as { unmask: Unmask }).unmask
  } catch {
    return undefined
  }
})()
/** Below this, a loop is faster than a call into native code. */
const NATIVE_UNMASK_FROM = 64

/** The mask turned to start at another offset: filled for each call that needs it (unmasking is synchronous). */
const rotated = Buffer.alloc(4)

/** Unmasks `bytes` in place; `offset` is where they start in their frame's payload. */
function unmask (bytes: Buffer, mask: Buffer, offset: number): void {
  const shift = offset & 3
  if (nativeUnmask !== undefined && bytes.length >= NATIVE_UNMASK_FROM) {
    if (shift === 0) return nativeUnmask(bytes, mask)
    for (let i = 0; i < 4; i++) rotated[i] = mask[(i + shift) & 3]
    return nativeUnmask(bytes, rotated)
  }
  for (let i = 0; i < bytes.length; i++) bytes[i] ^= mask[(i + shift) & 3]
}

/** A frame's header, read from where it starts. */
interface FrameInfo {
  fin: boolean
  /** RSV1–3 all clear. */
  plain: boolean
  opcode: number
  masked: boolean
  /** Header bytes, the mask included. */
  headerLength: number
  payloadLength: number
}

export interface ChunkFramesHandlers {
  /** Bytes for `ws`, in the order they came. */
  pass: (bytes: Buffer) => void
  /** A relayed chunk and its stream event. */
  chunk: (event: StreamEventName, chunk: Chunk) => void
  /** Whether chunks may be taken now (the connection is open); if not, their frames are passed. */
  open: () => boolean
}

export interface ChunkFramesOptions {
  /** Engine.IO 3: binary messages start with a type byte. */
  eio3: boolean
  /** `ws`'s bound on a message (0: none): a larger frame is passed, for `ws` to refuse. */
  maxPayload: number
  /** Bytes of a frame `ws` has begun and not yet received, which go to it first. */
  owed?: number
  /**
   * `ws`'s bound on the reads it holds at once (0: none). Past it, what is
   * held goes to `ws`, which then refuses the connection as it would have:
   * a frame sent a byte at a time costs an object per byte, here as there.
   */
  maxHeldReads?: number
}

/**
 * Splits one connection's incoming bytes into frames, takes out each
 * relayed chunk's two frames and passes the rest. At most one frame and a
 * chunk header are held at a time, so what it holds is bounded by
 * `maxPayload` as `ws`'s own buffer is.
 */
export class ChunkFrames {
  /** Bytes held, from `start` in the first part: a frame's start. */
  private parts: Buffer[] = []
  /** Where in the first part what is held starts: what was taken before it is not sliced off. */
  private start = 0
  private held = 0
  /** Bytes of a frame being passed that have not arrived yet: they go to `ws` as they come. */
  private passing: number
  /** A fragmented message is passed: its frames are all `ws`'s. */
  private fragmented = false
  /** A close frame or one `ws` refuses was passed: everything after is `ws`'s. */
  private over = false
  /** A chunk header at the front of `parts`: its frame's length and its event. */
  private headerBytes = 0
  private headerEvent: StreamEventName | undefined
  /** The last header seen, unmasked, and its event: a stream sends many chunks under one name. */
  private lastHeader: Buffer | undefined
  private lastEvent: StreamEventName | undefined
  private readonly eio3: boolean
  private readonly maxPayload: number
  private readonly maxHeldReads: number
  /** The mask of the frame being read. */
  private readonly mask = Buffer.alloc(4)

  constructor (private readonly handlers: ChunkFramesHandlers, options: ChunkFramesOptions) {
    this.eio3 = options.eio3
    this.maxPayload = options.maxPayload
    this.passing = options.owed ?? 0
    this.maxHeldReads = options.maxHeldReads ?? 0
  }

  /** Bytes read from the connection. */
  push (data: Buffer): void {
    // every part held has a byte at least: the pieces a chunk is taken in are never empty
    if (data.length === 0) return
    if (this.over) {
      this.handlers.pass(data)
      return
    }
    if (this.passing > 0) {
      if (data.length <= this.passing) {
        this.passing -= data.length
        this.handlers.pass(data)
        return
      }
      this.handlers.pass(data.subarray(0, this.passing))
      data = data.subarray(this.passing)
      this.passing = 0
    }
    this.parts.push(data)
    this.held += data.length
    if (this.maxHeldReads > 0 && this.parts.length >= this.maxHeldReads) {
      this.over = true
      this.passHeld(this.held)
      return
    }
    while (this.next());
  }

  /** Deals with the frame at the front; false when it needs more bytes, or none are held. */
  private next (): boolean {
    if (this.over || this.passing > 0 || this.held === 0) return false
    const at = this.headerBytes
    const frame = this.frameAt(at)
    if (frame === undefined) return false
    const total = frame.headerLength + frame.payloadLength

    if (this.headerEvent !== undefined) {
      // a chunk header waits for its attachment
      if (!this.isAttachment(frame)) return this.passHeader()
      if (this.held < at + total) return false
      const eio3TypeAt = at + frame.headerLength
      if (this.eio3 && (this.byteAt(eio3TypeAt) ^ this.byteAt(eio3TypeAt - 4)) !== EIO3_MESSAGE_TYPE) return this.passHeader()
      if (!this.handlers.open()) return this.passHeader()
      const event = this.headerEvent
      this.headerEvent = undefined
      this.headerBytes = 0
      this.drop(at)
      this.handlers.chunk(event, this.takeAttachment(frame))
      return true
    }

    if (this.isChunkHeader(frame)) {
      if (this.held < total) return false
      this.readMask(frame)
      let event = this.isLastHeader(frame) ? this.lastEvent : undefined
      if (event === undefined) {
        const payload = this.unmaskedCopy(frame)
        event = chunkEventOf(payload)
        if (event === undefined) {
          this.passHeld(total)
          return true
        }
        this.lastHeader = payload
        this.lastEvent = event
      }
      this.headerBytes = total
      this.headerEvent = event
      return true
    }

    this.passFrame(frame, total)
    return true
  }

  /** The frame starting `at` bytes into what is held, if its header is all here. */
  private frameAt (at: number): FrameInfo | undefined {
    if (this.held < at + 2) return undefined
    const b0 = this.byteAt(at)
    const b1 = this.byteAt(at + 1)
    const masked = (b1 & 0x80) !== 0
    let length = b1 & 0x7f
    let headerLength = 2
    if (length === 126) headerLength += 2
    else if (length === 127) headerLength += 8
    if (masked) headerLength += 4
    if (this.held < at + headerLength) return undefined
    if (length === 126) {
      length = this.byteAt(at + 2) * 0x100 + this.byteAt(at + 3)
    } else if (length === 127) {
      length = 0
      // up to 2^64: imprecise past 2^53, where `ws` refuses it anyway
      for (let i = 2; i < 10; i++) length = length * 0x100 + this.byteAt(at + i)
    }
    return { fin: (b0 & 0x80) !== 0, plain: (b0 & 0x70) === 0, opcode: b0 & 0x0f, masked, headerLength, payloadLength: length }
  }

  private isChunkHeader (frame: FrameInfo): boolean {
    return !this.fragmented && frame.fin && frame.plain && frame.masked && frame.opcode === OPCODE.TEXT &&
      frame.payloadLength <= MAX_CHUNK_HEADER_BYTES
  }

  private isAttachment (frame: FrameInfo): boolean {
    return frame.fin && frame.plain && frame.masked && frame.opcode === OPCODE.BINARY &&
      frame.payloadLength >= (this.eio3 ? 1 : 0) &&
      (this.maxPayload === 0 || frame.payloadLength <= this.maxPayload)
  }

  /** The chunk header held is not followed by its attachment: both go to `ws`, as they came. */
  private passHeader (): boolean {
    this.passHeld(this.headerBytes)
    this.headerBytes = 0
    this.headerEvent = undefined
    return true
  }

  /** Passes a frame that is not a chunk's, and notes what it means for the frames after it. */
  private passFrame (frame: FrameInfo, total: number): void {
    const { opcode } = frame
    if (!frame.plain || !frame.masked || (this.maxPayload > 0 && frame.payloadLength > this.maxPayload)) this.over = true
    else if (opcode === OPCODE.TEXT || opcode === OPCODE.BINARY) this.fragmented = !frame.fin
    else if (opcode === OPCODE.CONTINUATION) { if (frame.fin) this.fragmented = false }
    else if (opcode !== OPCODE.PING && opcode !== OPCODE.PONG) this.over = true // a close, or an opcode `ws` refuses
    if (this.over || this.held < total) {
      if (!this.over) this.passing = total - this.held
      this.passHeld(this.held)
      return
    }
    this.passHeld(total)
  }

  private byteAt (offset: number): number {
    const { parts } = this
    offset += this.start
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      if (offset < part.length) return part[offset]
      offset -= part.length
    }
    throw new RangeError('past the bytes held')
  }

  /** Reads the mask of the frame at the front into `mask`. */
  private readMask (frame: FrameInfo): void {
    const at = frame.headerLength - 4
    for (let i = 0; i < 4; i++) this.mask[i] = this.byteAt(at + i)
  }

  /** Whether the frame at the front, unmasked with `mask`, is the last chunk header seen: compared where it lies, uncopied. */
  private isLastHeader (frame: FrameInfo): boolean {
    const last = this.lastHeader
    if (last?.length !== frame.payloadLength) return false
    const { mask, parts } = this
    let offset = this.start + frame.headerLength
    const first = parts[0]
    if (offset + last.length <= first.length) {
      // the usual case, the whole header in one read
      const m0 = mask[0]
      const m1 = mask[1]
      const m2 = mask[2]
      const m3 = mask[3]
      let i = 0
      for (const end = last.length - 3; i < end; i += 4, offset += 4) {
        if ((first[offset] ^ m0) !== last[i] || (first[offset + 1] ^ m1) !== last[i + 1] ||
          (first[offset + 2] ^ m2) !== last[i + 2] || (first[offset + 3] ^ m3) !== last[i + 3]) return false
      }
      for (; i < last.length; i++, offset++) if ((first[offset] ^ mask[i & 3]) !== last[i]) return false
      return true
    }
    let i = 0
    for (const part of parts) {
      if (offset >= part.length) { offset -= part.length; continue }
      for (let j = offset; j < part.length && i < last.length; j++, i++) if ((part[j] ^ mask[i & 3]) !== last[i]) return false
      offset = 0
      if (i === last.length) return true
    }
    return i === last.length
  }

  /** A small frame's payload, unmasked with `mask`, in a buffer of its own. */
  private unmaskedCopy (frame: FrameInfo): Buffer {
    const { headerLength, payloadLength } = frame
    const payload = Buffer.allocUnsafe(payloadLength)
    const { mask } = this
    let offset = this.start + headerLength
    let i = 0
    for (const part of this.parts) {
      if (offset >= part.length) { offset -= part.length; continue }
      for (let j = offset; j < part.length && i < payloadLength; j++, i++) payload[i] = part[j] ^ mask[i & 3]
      offset = 0
      if (i === payloadLength) break
    }
    return payload
  }

  /** Takes the attachment frame at the front: its payload unmasked in place, less Engine.IO 3's type byte. */
  private takeAttachment (frame: FrameInfo): Chunk {
    this.readMask(frame)
    const { mask } = this
    const skip = this.eio3 ? 1 : 0
    const first = this.parts[0]
    const from = this.start + frame.headerLength + skip
    const to = this.start + frame.headerLength + frame.payloadLength
    if (to <= first.length) {
      // the usual case for small chunks: the whole frame in one read, taken as one slice of it
      const piece = first.subarray(from, to)
      unmask(piece, mask, skip)
      this.drop(frame.headerLength + frame.payloadLength)
      return piece
    }
    this.drop(frame.headerLength)
    const pieces = this.takeParts(frame.payloadLength)
    let offset = 0
    for (const piece of pieces) {
      unmask(piece, mask, offset)
      offset += piece.length
    }
    if (this.eio3) {
      pieces[0] = pieces[0].subarray(1)
      if (pieces[0].length === 0 && pieces.length > 1) pieces.shift()
    }
    const length = frame.payloadLength - (this.eio3 ? 1 : 0)
    return pieces.length === 1 ? pieces[0] : new ChunkParts(pieces, length)
  }

  /** Passes the first `n` bytes held to `ws`. */
  private passHeld (n: number): void {
    for (const piece of this.takeParts(n)) this.handlers.pass(piece)
  }

  private drop (n: number): void {
    this.held -= n
    let at = this.start + n
    while (at > 0 && at >= this.parts[0].length) {
      at -= this.parts[0].length
      this.parts.shift()
      if (this.parts.length === 0) break
    }
    this.start = this.parts.length === 0 ? 0 : at
  }

  /** Removes the first `n` bytes held and returns them as the pieces they were in, uncopied. */
  private takeParts (n: number): Buffer[] {
    const pieces: Buffer[] = []
    this.held -= n
    while (n > 0) {
      const part = this.parts[0]
      const { start } = this
      const left = part.length - start
      if (left <= n) {
        pieces.push(start === 0 ? part : part.subarray(start))
        this.parts.shift()
        this.start = 0
        n -= left
      } else {
        pieces.push(part.subarray(start, start + n))
        this.start = start + n
        n = 0
      }
    }
    return pieces
  }
}
