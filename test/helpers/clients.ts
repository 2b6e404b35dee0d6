/**
 * Real Socket.IO clients in the versions peers use: socket.io-client 2.x
 * (Engine.IO v3, what libp2p-websocket-star@0.10.2 ships) and 4.x, over
 * websocket or polling, behind one small interface.
 */
import ioV2 from 'socket.io-client-v2'
import { io as ioV4 } from 'socket.io-client'
import { within } from './wait.js'

export type ClientVersion = 'v2' | 'v4'
export type Transport = 'websocket' | 'polling'

export const CLIENT_KINDS: ReadonlyArray<{ version: ClientVersion, transport: Transport }> = [
  { version: 'v2', transport: 'websocket' },
  { version: 'v2', transport: 'polling' },
  { version: 'v4', transport: 'websocket' },
  { version: 'v4', transport: 'polling' }
]

/** A listener for any event: whatever it declares, the client calls it with what came. */
type Listener = (...args: never[]) => void

/** Methods, so that socket.io-client 4.x's `on`, whose listeners take `any`, fits. */
interface AnySocket {
  id?: string
  connected: boolean
  on (event: string, listener: Listener): unknown
  off (event: string, listener?: Listener): unknown
  emit (event: string, ...args: unknown[]): unknown
  disconnect (): unknown
}

export class Client {
  /** Every `ws-peer` address received, in order. */
  readonly peerEvents: string[] = []

  constructor (readonly socket: AnySocket, readonly version: ClientVersion, readonly transport: Transport) {
    socket.on('ws-peer', (address: string) => { this.peerEvents.push(address) })
  }

  emit (event: string, ...args: unknown[]): void {
    this.socket.emit(event, ...args)
  }

  /** Emits `event` with an acknowledgement and resolves with the ack's arguments. */
  async request (event: string, ...args: unknown[]): Promise<unknown[]> {
    return await within(new Promise<unknown[]>((resolve) => {
      this.socket.emit(event, ...args, (...answer: unknown[]) => { resolve(answer) })
    }), `ack of ${event}`)
  }

  /** Resolves with the arguments of the next `event` that satisfies `accept`. */
  async next (event: string, accept: (...args: unknown[]) => boolean = () => true): Promise<unknown[]> {
    let listener: ((...args: unknown[]) => void) | undefined
    try {
      return await within(new Promise<unknown[]>((resolve) => {
        listener = (...args: unknown[]) => { if (accept(...args)) resolve(args) }
        this.socket.on(event, listener)
      }), `event ${event}`)
    } finally {
      this.socket.off(event, listener)
    }
  }

  /** Resolves once this client has been told about `address`. */
  async discovers (address: string): Promise<void> {
    if (this.peerEvents.includes(address)) return
    await this.next('ws-peer', (a) => a === address)
  }

  async close (): Promise<void> {
    if (!this.socket.connected) return
    const gone = new Promise<void>((resolve) => { this.socket.on('disconnect', () => { resolve() }) })
    this.socket.disconnect()
    await within(gone, 'client disconnect')
  }
}

/** `extra` is merged into the client's options, e.g. `{ rejectUnauthorized: false }` for a self-signed certificate. */
export async function connect (url: string, version: ClientVersion = 'v2', transport: Transport = 'websocket', extra: Record<string, unknown> = {}): Promise<Client> {
  const options = { transports: [transport], forceNew: true, reconnection: false, ...extra }
  const socket: AnySocket = version === 'v2' ? ioV2(url, options) : ioV4(url, options)
  await within(new Promise<void>((resolve, reject) => {
    socket.on('connect', () => { resolve() })
    socket.on('connect_error', (err: unknown) => { reject(err instanceof Error ? err : new Error(String(err))) })
  }), `${version} ${transport} connection to ${url}`)
  return new Client(socket, version, transport)
}
