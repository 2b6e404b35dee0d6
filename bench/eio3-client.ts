/**
 * A lightweight Engine.IO v3 / socket.io 2.x client on raw TCP, so that
 * thousands of peers fit in one load-generator process: the wire format of
 * socket.io-client 2.x over the `websocket` transport, and nothing more.
 *
 * It does the WebSocket upgrade itself, parses the server's (unmasked) frames
 * in place from one shared read buffer, counts `ws-peer`
 * announcements by comparing bytes instead of decoding them, and sends client
 * frames masked with the all-zero key, which RFC 6455 allows and which makes
 * masking free. It does not offer permessage-deflate (real clients do; the old
 * server would then spend CPU compressing join replies above 1 KiB, so leaving
 * it out can only flatter the old server).
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

/** The frame payload every `ws-peer` announcement starts with. */
const PEER_PREFIX = Buffer.from('42["ws-peer"')
/** Fixed by RFC 6455 for the Sec-WebSocket-Accept check. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Engine.IO v3's default, used until the open packet says otherwise. */
const DEFAULT_PING_INTERVAL_MS = 25_000
/** Largest handshake response accepted before the upgrade is declared broken. */
const MAX_HANDSHAKE_BYTES = 16 * 1024

/**
 * Every client reads into this one buffer through net's `onread` option,
 * which skips the stream machinery: a read costs a callback instead of a
 * Buffer, a stream chunk and an event. The old server writes one frame per
 * syscall, so at 100,000 announcements per second that difference decides
 * whether the generator or the server is measured. Whatever outlives the
 * callback (a partial frame, an ack) is copied out.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

const OPCODE_CONTINUATION = 0x0
const OPCODE_TEXT = 0x1
const OPCODE_BINARY = 0x2
const OPCODE_CLOSE = 0x8
const OPCODE_PING = 0x9
const OPCODE_PONG = 0xa

/**
 * Local source addresses, used round robin: each has its own ~28,000
 * ephemeral ports, so tens of thousands of connections across scenarios (and
 * their TIME_WAIT leftovers) never run out. All of 127/8 is loopback on Linux.
 */
export const SOURCE_ADDRESSES: readonly string[] = Array.from({ length: 49 }, (_, i) => `127.0.0.${i + 2}`)
let nextSource = 0

/** An acknowledgement: its arguments, decoded only when asked for, and when it came. */
export class Ack {
  private decoded: unknown[] | undefined

  constructor (
    /** The ack's JSON array, as received. */
    private readonly raw: Buffer,
    /** `performance.now()` when the request was sent. */
    readonly sentAt: number,
    readonly receivedAt: number
  ) {}

  get latencyMs (): number {
    return this.receivedAt - this.sentAt
  }

  get args (): unknown[] {
    this.decoded ??= JSON.parse(this.raw.toString('utf8')) as unknown[]
    return this.decoded
  }

  /** The first argument, the error by the protocol's convention; `null` is read without decoding the rest (a join reply may list thousands of peers). */
  get error (): unknown {
    if (this.raw.length >= 5 && this.raw.toString('latin1', 0, 5) === '[null') return null
    return this.args[0]
  }
}

interface Pending {
  resolve: (ack: Ack) => void
  reject: (err: Error) => void
  sentAt: number
  timer: NodeJS.Timeout | undefined
}

export interface ConnectOptions {
  port: number
  host?: string
  /** Gives up (and rejects) after this long without the socket.io connect packet. */
  timeoutMs?: number
  /** Source address; by default the next of SOURCE_ADDRESSES. */
  localAddress?: string
  /** Aborting gives up the attempt. */
  signal?: AbortSignal
}

export class Eio3Client {
  /** `ws-peer` announcements received. */
  peerMessages = 0
  /** Set once the connection is gone: why. */
  closedReason: string | undefined
  /** True when the connection ended without `close()` or `destroy()` being called. */
  dropped = false
  /** Called once when the connection is gone. */
  onClose: ((reason: string) => void) | undefined
  /** Server events other than `ws-peer` (rare in a benchmark), decoded. */
  onEvent: ((name: string, args: unknown[]) => void) | undefined
  pingIntervalMs = DEFAULT_PING_INTERVAL_MS
  /** `performance.now()` when the connection was asked for, when TCP connected and when socket.io's connect packet came. */
  readonly startedAt = performance.now()
  tcpConnectedAt: number | undefined
  connectedAt: number | undefined

  private readonly socket: Socket
  private nextAckId = 0
  private readonly pending = new Map<number, Pending>()
  private pingTimer: NodeJS.Timeout | undefined
  private closing = false
  private handshake: Buffer | undefined = Buffer.alloc(0)
  private readonly expectedAccept: string
  /** Bytes of an incomplete frame, kept until `needed` bytes are there. */
  private held: Buffer[] = []
  private heldBytes = 0
  private needed = 0
  /** Pieces of a fragmented message. */
  private fragments: Buffer[] | undefined
  private onConnected: (() => void) | undefined
  /** How far the connection got, for a timeout's message. */
  private stage = 'no TCP connection'

  private constructor (options: ConnectOptions) {
    const key = randomBytes(16).toString('base64')
    this.expectedAccept = createHash('sha1').update(key + WS_GUID).digest('base64')
    const host = options.host ?? '127.0.0.1'
    const localAddress = options.localAddress ?? SOURCE_ADDRESSES[nextSource++ % SOURCE_ADDRESSES.length]
    this.socket = netConnect({
      port: options.port,
      host,
      localAddress,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (bytes: number, buffer: Uint8Array) => { this.onRead(buffer as Buffer, bytes); return true } }
    })
    this.socket.write(
      `GET /socket.io/?EIO=3&transport=websocket HTTP/1.1\r\nHost: ${host}:${options.port}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    this.socket.once('connect', () => { this.stage = 'no upgrade'; this.tcpConnectedAt = performance.now() })
    this.socket.on('error', (err) => { this.gone(err.message) })
    this.socket.on('close', () => { this.gone('connection closed') })
  }

  /** Resolves once the server has sent socket.io's connect packet (`40`). */
  static async connect (options: ConnectOptions): Promise<Eio3Client> {
    if (options.signal?.aborted === true) throw new Error('aborted')
    const client = new Eio3Client(options)
    const abort = (): void => { client.destroy() }
    options.signal?.addEventListener('abort', abort)
    try {
      return await new Promise<Eio3Client>((resolve, reject) => {
        const timer = setTimeout(() => {
          client.onClose = undefined
          client.destroy()
          reject(new Error(`connect timeout (${client.stage})`))
        }, options.timeoutMs ?? 20_000)
        client.onConnected = () => { clearTimeout(timer); client.onClose = undefined; resolve(client) }
        client.onClose = (reason) => { clearTimeout(timer); reject(new Error(reason)) }
      })
    } finally {
      options.signal?.removeEventListener('abort', abort)
    }
  }

  get connected (): boolean {
    return this.closedReason === undefined
  }

  /** Emits `event` without an acknowledgement. */
  emit (event: string, ...args: unknown[]): void {
    this.sendText('42' + JSON.stringify([event, ...args]))
  }

  /** Emits `event` with an acknowledgement; resolves with it, or rejects on timeout or when the connection goes. */
  async request (event: string, args: unknown[], timeoutMs = 20_000): Promise<Ack> {
    if (this.closedReason !== undefined) throw new Error(this.closedReason)
    const id = this.nextAckId++
    return await new Promise<Ack>((resolve, reject) => {
      const entry: Pending = { resolve, reject, sentAt: performance.now(), timer: undefined }
      entry.timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`no answer to ${event} in ${timeoutMs / 1000} s`))
      }, timeoutMs)
      this.pending.set(id, entry)
      this.sendText(`42${id}` + JSON.stringify([event, ...args]))
    })
  }

  /** Closes the WebSocket politely (close frame, then FIN). */
  close (): void {
    if (this.closedReason !== undefined) return
    this.closing = true
    this.sendFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8])) // 1000: normal closure
    this.socket.end()
  }

  /** Drops the TCP connection at once. */
  destroy (): void {
    this.closing = true
    this.socket.destroy()
  }

  private gone (reason: string): void {
    if (this.closedReason !== undefined) return
    this.closedReason = reason
    this.dropped = !this.closing
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer)
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer)
      entry.reject(new Error(reason))
    }
    this.pending.clear()
    this.socket.destroy()
    this.onClose?.(reason)
  }

  private onRead (buffer: Buffer, bytes: number): void {
    const chunk = buffer.subarray(0, bytes)
    if (this.handshake !== undefined) this.onHandshake(chunk)
    else this.onData(chunk)
  }

  private onHandshake (chunk: Buffer): void {
    const data = Buffer.concat([this.handshake as Buffer, chunk])
    const end = data.indexOf('\r\n\r\n')
    if (end < 0) {
      if (data.length > MAX_HANDSHAKE_BYTES) this.gone('handshake too long')
      else this.handshake = data
      return
    }
    const head = data.toString('latin1', 0, end)
    this.handshake = undefined
    if (!head.startsWith('HTTP/1.1 101')) { this.gone(`upgrade refused: ${head.split('\r\n')[0] ?? ''}`); return }
    if (!head.includes(this.expectedAccept)) { this.gone('bad Sec-WebSocket-Accept'); return }
    this.stage = 'no Engine.IO open packet'
    if (data.length > end + 4) this.onData(data.subarray(end + 4))
  }

  private onData (chunk: Buffer): void {
    let buf: Buffer
    if (this.heldBytes === 0) {
      buf = chunk
    } else {
      // `chunk` lives in READ_BUFFER: keep a copy
      this.held.push(Buffer.from(chunk))
      this.heldBytes += chunk.length
      if (this.heldBytes < this.needed) return
      buf = Buffer.concat(this.held, this.heldBytes)
      this.held = []
      this.heldBytes = 0
    }
    let offset = 0
    this.needed = 0
    while (this.closedReason === undefined) {
      const left = buf.length - offset
      if (left < 2) break
      const b0 = buf[offset]
      const b1 = buf[offset + 1]
      let length = b1 & 0x7f
      let header = 2
      if (length === 126) {
        if (left < 4) break
        length = buf.readUInt16BE(offset + 2)
        header = 4
      } else if (length === 127) {
        if (left < 10) break
        length = buf.readUInt32BE(offset + 2) * 2 ** 32 + buf.readUInt32BE(offset + 6)
        header = 10
      }
      if ((b1 & 0x80) !== 0) { this.gone('server sent a masked frame'); return }
      if (left < header + length) {
        this.needed = header + length
        break
      }
      const start = offset + header
      offset = start + length
      // the hot path: a whole text frame holding an announcement is counted without touching it further
      if (b0 === 0x81 && isPeerMessage(buf, start, length)) {
        this.peerMessages++
        continue
      }
      this.onFrame(b0 & 0x0f, (b0 & 0x80) !== 0, buf.subarray(start, offset))
    }
    if (offset < buf.length && this.closedReason === undefined) {
      const rest = Buffer.from(buf.subarray(offset))
      this.held = [rest]
      this.heldBytes = rest.length
    }
  }

  private onFrame (opcode: number, fin: boolean, payload: Buffer): void {
    switch (opcode) {
      case OPCODE_TEXT:
        if (fin) this.onMessage(payload)
        else this.fragments = [Buffer.from(payload)]
        return
      case OPCODE_CONTINUATION:
        if (this.fragments === undefined) { this.gone('continuation without a first fragment'); return }
        this.fragments.push(Buffer.from(payload))
        if (fin) {
          const whole = Buffer.concat(this.fragments)
          this.fragments = undefined
          this.onMessage(whole)
        }
        return
      case OPCODE_PING:
        this.sendFrame(OPCODE_PONG, payload)
        return
      case OPCODE_CLOSE:
        this.gone(`closed by the server${payload.length >= 2 ? ` (${payload.readUInt16BE(0)})` : ''}`)
        return
      case OPCODE_BINARY:
      case OPCODE_PONG:
      default:
    }
  }

  /** One Engine.IO packet. */
  private onMessage (payload: Buffer): void {
    if (isPeerMessage(payload, 0, payload.length)) {
      this.peerMessages++
      return
    }
    const engineType = payload[0]
    if (engineType === 0x34 /* '4': message */) {
      const socketType = payload[1]
      if (socketType === 0x33 /* '3': ack */) { this.onAck(payload); return }
      if (socketType === 0x30 /* '0': connect */) { this.connectedAt = performance.now(); this.onConnected?.(); this.onConnected = undefined; return }
      if (socketType === 0x32 /* '2': event */) { this.onServerEvent(payload); return }
      if (socketType === 0x31 /* '1': disconnect */) { this.gone('disconnected by the server'); return }
      if (socketType === 0x34 /* '4': error */) { this.gone(`socket.io error ${payload.toString('utf8', 2)}`); return }
      return
    }
    if (engineType === 0x30 /* '0': open */) {
      const open = JSON.parse(payload.toString('utf8', 1)) as { pingInterval?: number }
      if (typeof open.pingInterval === 'number') this.pingIntervalMs = open.pingInterval
      this.stage = 'no socket.io connect packet'
      // Engine.IO v3: the client pings; the server drops it after pingInterval + pingTimeout of silence
      this.pingTimer = setInterval(() => { this.sendText('2') }, this.pingIntervalMs)
      return
    }
    if (engineType === 0x31 /* '1': close */) { this.gone('closed by the server (engine.io)'); return }
    if (engineType === 0x32 /* '2': ping, Engine.IO v4 only */) this.sendText('3')
    // '3' (pong) needs nothing
  }

  private onAck (payload: Buffer): void {
    let i = 2
    let id = 0
    for (; i < payload.length; i++) {
      const c = payload[i]
      if (c < 0x30 || c > 0x39) break
      id = id * 10 + c - 0x30
    }
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    clearTimeout(entry.timer)
    // the payload is a view into READ_BUFFER or into a chunk shared with other frames
    entry.resolve(new Ack(Buffer.from(payload.subarray(i)), entry.sentAt, performance.now()))
  }

  private onServerEvent (payload: Buffer): void {
    if (this.onEvent === undefined) return
    let i = 2
    while (i < payload.length && payload[i] !== 0x5b /* '[' */) i++
    const [name, ...args] = JSON.parse(payload.toString('utf8', i)) as [string, ...unknown[]]
    this.onEvent(name, args)
  }

  private sendText (text: string): void {
    if (this.closedReason !== undefined) return
    const length = Buffer.byteLength(text)
    const header = frameHeaderLength(length)
    const frame = Buffer.allocUnsafe(header + length)
    writeFrameHeader(frame, OPCODE_TEXT, length)
    frame.write(text, header)
    this.socket.write(frame)
  }

  private sendFrame (opcode: number, payload: Buffer): void {
    if (this.closedReason !== undefined) return
    const header = frameHeaderLength(payload.length)
    const frame = Buffer.allocUnsafe(header + payload.length)
    writeFrameHeader(frame, opcode, payload.length)
    payload.copy(frame, header)
    this.socket.write(frame)
  }
}

/** Whether the payload at `buf[start, start + length)` starts with `42["ws-peer"`; a byte loop beats a native call for 12 bytes. */
function isPeerMessage (buf: Buffer, start: number, length: number): boolean {
  if (length < PEER_PREFIX.length) return false
  for (let i = 0; i < PEER_PREFIX.length; i++) {
    if (buf[start + i] !== PEER_PREFIX[i]) return false
  }
  return true
}

/** Client frames carry a 4-byte mask key after the length. */
function frameHeaderLength (length: number): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + 4
}

/** FIN, `opcode`, the MASK bit and `length`, then the all-zero mask key (payload XOR 0 is the payload). */
function writeFrameHeader (frame: Buffer, opcode: number, length: number): void {
  frame[0] = 0x80 | opcode
  let at: number
  if (length < 126) {
    frame[1] = 0x80 | length
    at = 2
  } else if (length < 65536) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(length, 2)
    at = 4
  } else {
    frame[1] = 0x80 | 127
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2)
    frame.writeUInt32BE(length >>> 0, 6)
    at = 10
  }
  frame.writeUInt32BE(0, at)
}
