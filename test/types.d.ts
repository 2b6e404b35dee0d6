// Minimal declarations for the untyped packages old peers use.

declare module 'socket.io-client-v2' {
  /** A listener for any event: whatever it declares, the client calls it with what came. */
  type Listener = (...args: never[]) => void
  interface V2Socket {
    id: string
    connected: boolean
    io: { engine: { transport: { name: string } } }
    on: (event: string, listener: Listener) => V2Socket
    once: (event: string, listener: Listener) => V2Socket
    off: (event: string, listener?: Listener) => V2Socket
    emit: (event: string, ...args: unknown[]) => V2Socket
    disconnect: () => V2Socket
    close: () => V2Socket
  }
  function io (uri: string, options?: Record<string, unknown>): V2Socket
  export = io
}

declare module 'libp2p-websocket-star' {
  import type { EventEmitter } from 'node:events'
  import type { Multiaddr } from 'multiaddr'
  import type PeerId from 'peer-id'
  import type { Duplex } from 'pull-stream'
  import type io from 'socket.io-client-v2'

  /** Calls back with an error alone (so no value), or with `null` and the result. */
  type Callback<T> = (...result: [err: Error, value: undefined] | [err: null, value: T]) => void

  class WebsocketStar {
    constructor (options?: { id?: PeerId, allowJoinWithDisabledChallenge?: boolean, servers?: string[] })
    /** The PeerId it signs the crypto challenge with. */
    id: PeerId | undefined
    /** Emits `peer` with a `WebsocketStar.PeerInfo` for every address a listener hears of. */
    discovery: EventEmitter
    createListener (handler: (conn: WebsocketStar.Connection) => void): WebsocketStar.Listener
    createListener (options: object, handler: (conn: WebsocketStar.Connection) => void): WebsocketStar.Listener
    /** Dials through the listener on `ma`'s server; returns nothing when `ma` names no server. */
    dial (ma: Multiaddr, callback: Callback<WebsocketStar.Connection>): WebsocketStar.Connection | undefined
    dial (ma: Multiaddr, options: object, callback: Callback<WebsocketStar.Connection>): WebsocketStar.Connection | undefined
    filter (multiaddrs: Multiaddr | Multiaddr[]): Multiaddr[]
  }

  namespace WebsocketStar {
    /** peer-info@0.15's PeerInfo, as discovery makes it: a PeerId without keys and the address heard. */
    interface PeerInfo {
      readonly id: PeerId
      readonly multiaddrs: {
        readonly size: number
        toArray: () => Multiaddr[]
        has: (ma: string | Multiaddr) => boolean
        add: (ma: string | Multiaddr) => void
      }
      readonly protocols: Set<string>
    }

    /** interface-connection@0.3's Connection: a pull-stream duplex of Buffers. */
    interface Connection extends Duplex<Buffer, Buffer> {
      /** The address the other end dialled from (the dialer's side: the address dialled). */
      getObservedAddrs: (callback: (err: Error | null, addrs: Multiaddr[]) => void) => void
      getPeerInfo: (callback: Callback<PeerInfo>) => void
      setPeerInfo: (peerInfo: PeerInfo) => void
    }

    /** A listener on one server; an EventEmitter of `listening`, `peer`, `connection`, `error` and `close`. */
    interface Listener extends EventEmitter {
      /** Its socket.io-client 2.x socket, while connected or reconnecting. */
      io?: ReturnType<typeof io>
      listen: (ma: Multiaddr, callback?: (err?: Error | null) => void) => void
      close: (callback?: (err?: Error | null) => void) => void
      getAddrs: (callback: (err: Error | null, addrs: Multiaddr[]) => void) => void
      /** Disconnects from the server at once (private: the client's own teardown). */
      _down: () => void
    }
  }

  export = WebsocketStar
}

declare module 'peer-id' {
  /** peer-id@0.12's PeerId (the module is the class). */
  class PeerId {
    constructor (id: Buffer, privKey?: PeerId.PrivateKey | null, pubKey?: PeerId.PublicKey)
    /** The multihash. */
    readonly id: Buffer
    privKey: PeerId.PrivateKey | null | undefined
    pubKey: PeerId.PublicKey | undefined
    /** The protobuf public key, when the key is known. */
    marshalPubKey (): Buffer | undefined
    marshalPrivKey (): Buffer | undefined
    toJSON (): { id: string, privKey?: string, pubKey?: string }
    toHexString (): string
    toBytes (): Buffer
    toB58String (): string
    isEqual (id: Buffer | PeerId): boolean
    static create (callback: PeerId.Callback<PeerId.WithKeys>): void
    static create (options: { bits?: number, keyType?: string } | undefined, callback: PeerId.Callback<PeerId.WithKeys>): void
    static createFromHexString (str: string): PeerId
    static createFromBytes (buf: Buffer): PeerId
    static createFromB58String (str: string): PeerId
    /** From a protobuf public key (a base64 string or its bytes). */
    static createFromPubKey (key: Buffer | string, callback: PeerId.Callback<PeerId & { readonly pubKey: PeerId.PublicKey }>): void
    static createFromPrivKey (key: Buffer | string, callback: PeerId.Callback<PeerId.WithKeys>): void
    static isPeerId (value: unknown): value is PeerId
  }

  namespace PeerId {
    /** Calls back with an error alone (so no value), or with `null` and the result. */
    type Callback<T> = (...result: [err: Error, value: undefined] | [err: null, value: T]) => void

    /** libp2p-crypto@0.16's public keys, as far as a PeerId uses them. */
    interface PublicKey {
      /** The protobuf form. */
      readonly bytes: Buffer
      verify: (data: Buffer, signature: Buffer, callback: Callback<boolean>) => void
      hash: (callback: Callback<Buffer>) => void
      equals: (key: PublicKey) => boolean
    }

    interface PrivateKey {
      readonly public: PublicKey
      /** The protobuf form. */
      readonly bytes: Buffer
      sign: (data: Buffer, callback: Callback<Buffer>) => void
      hash: (callback: Callback<Buffer>) => void
      equals: (key: PrivateKey) => boolean
    }

    /** A PeerId made from a private key (`create`, `createFromPrivKey`): it has both keys. */
    interface WithKeys extends PeerId {
      readonly privKey: PrivateKey
      readonly pubKey: PublicKey
      marshalPubKey (): Buffer
      marshalPrivKey (): Buffer
    }
  }

  export = PeerId
}

declare module 'multiaddr' {
  /** multiaddr@6: callable with or without `new`. */
  function multiaddr (addr?: string | Buffer | multiaddr.Multiaddr): multiaddr.Multiaddr

  namespace multiaddr {
    interface Multiaddr {
      /** The binary form. */
      readonly buffer: Buffer
      toString: () => string
      toJSON: () => string
      toOptions: () => { family: string, host: string, transport: string, port: string }
      protoNames: () => string[]
      encapsulate: (addr: string | Buffer | Multiaddr) => Multiaddr
      decapsulate: (addr: string | Multiaddr) => Multiaddr
      /** The last `/ipfs/` id, or null when there is none or it is not base58. */
      getPeerId: () => string | null
      equals: (addr: Multiaddr) => boolean
    }
    function isMultiaddr (value: unknown): value is Multiaddr
  }

  export = multiaddr
}

declare module 'pull-stream' {
  /** pull-stream@3: `pull(source, ...throughs, sink)`, duplexes (`{ source, sink }`) anywhere. */
  function pull (...streams: Array<pull.Source<unknown> | pull.Through<never, unknown> | pull.Sink<never> | pull.Duplex<never, unknown>>): unknown

  namespace pull {
    /**
     * How a stream ends, or whether a sink aborts: `null` (or `false`) to go
     * on, `true` for a clean end, anything else is an error. Streams pass on
     * what they were given, so a callback can be handed anything.
     */
    type End = unknown
    type SourceCallback<T> = (end: End, data?: T) => void
    /** Asked for the next value (or, with a truthy `abort`, to stop), calls back once. */
    type Source<T> = (abort: End, cb: SourceCallback<T>) => void
    type Sink<T> = (source: Source<T>) => void
    type Through<In, Out> = (source: Source<In>) => Source<Out>
    interface Duplex<In, Out> {
      source: Source<Out>
      sink: Sink<In>
    }

    /** A source of `array`'s items, then the end. */
    function values<T> (array?: readonly T[], onAbort?: (abort: End) => void): Source<T>
    /** Calls `op` with every value; a `false` from it aborts. `done` gets `null` for a clean end, or the error. */
    function drain<T> (op?: (data: T) => unknown, done?: (end: End) => void): Sink<T>
    /** Collects every value; `cb` gets `null` for a clean end, or the error, and what came. */
    function collect<T> (cb: (end: End, values: T[]) => void): Sink<T>
    /** Passes values on, calling `op` with each; `onEnd` gets `null` for a clean end, or the error. */
    function through<T> (op?: (data: T) => void, onEnd?: (end: End) => void): Through<T, T>
  }

  export = pull
}

declare module 'parse-prometheus-text-format' {
  interface Sample {
    value?: string
    labels?: Record<string, string>
    buckets?: Record<string, string>
    count?: string
    sum?: string
  }
  interface Family {
    name: string
    help: string
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
    metrics: Sample[]
  }
  function parse (text: string): Family[]
  export default parse
}
