// Minimal declarations for the untyped packages old peers use.

declare module 'socket.io-client-v2' {
  interface V2Socket {
    id: string
    connected: boolean
    io: { engine: { transport: { name: string } } }
    on: (event: string, listener: (...args: any[]) => void) => V2Socket
    once: (event: string, listener: (...args: any[]) => void) => V2Socket
    off: (event: string, listener?: (...args: any[]) => void) => V2Socket
    emit: (event: string, ...args: any[]) => V2Socket
    disconnect: () => V2Socket
    close: () => V2Socket
  }
  function io (uri: string, options?: Record<string, unknown>): V2Socket
  export = io
}

declare module 'libp2p-websocket-star' {
  class WebsocketStar {
    constructor (options?: { id?: unknown, allowJoinWithDisabledChallenge?: boolean, servers?: string[] })
    discovery: import('node:events').EventEmitter
    createListener (handler: (conn: any) => void): any
    dial (ma: unknown, callback: (err: Error | null, conn?: any) => void): any
  }
  export = WebsocketStar
}

declare module 'peer-id' {
  const PeerId: any
  export = PeerId
}

declare module 'multiaddr' {
  const multiaddr: any
  export = multiaddr
}

declare module 'pull-stream' {
  const pull: any
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
