/**
 * A TCP load balancer in the test process, standing in for the one in front of
 * a cluster (nginx in docker-compose.yml). It hands each incoming connection
 * to the next backend in turn and is not sticky, so only WebSocket-only
 * clients work through it: one TCP connection carries a whole WebSocket
 * session, while a polling session's requests could land on different nodes.
 */
import { createConnection, createServer, type Socket } from 'node:net'

export interface TcpProxy {
  port: number
  /** What clients connect to: `http://127.0.0.1:<port>`. */
  url: string
  /** How many connections went to each backend so far, in the order of `backends`. */
  connectionsPerBackend: () => number[]
  /** Closes the listening port and destroys every connection through it. */
  stop: () => Promise<void>
}

/**
 * Listens on a free port of 127.0.0.1 and forwards each connection to the
 * next port of `backends` round-robin. A backend that refuses is skipped for
 * the next one, as a load balancer's failover would; when all refuse, the
 * client's connection is closed.
 */
export async function startProxy (backends: number[]): Promise<TcpProxy> {
  if (backends.length === 0) throw new Error('startProxy needs at least one backend port')
  const counts = backends.map(() => 0)
  const sockets = new Set<Socket>()
  let next = 0

  const track = (socket: Socket): void => {
    sockets.add(socket)
    socket.once('close', () => { sockets.delete(socket) })
  }

  /** Tries backends from the next in turn; calls back with the connected one, or undefined when none answers. */
  const connectBackend = (tries: number, done: (backend: Socket | undefined) => void): void => {
    if (tries === 0) { done(undefined); return }
    const index = next
    next = (next + 1) % backends.length
    const backend = createConnection({ port: backends[index], host: '127.0.0.1' })
    track(backend)
    const refused = (): void => { backend.destroy(); connectBackend(tries - 1, done) }
    backend.once('error', refused)
    backend.once('connect', () => {
      backend.off('error', refused)
      counts[index] = (counts[index] ?? 0) + 1
      done(backend)
    })
  }

  const server = createServer((client) => {
    track(client)
    // Until a backend answers, what the client sends waits in its socket: nothing reads it before the pipe.
    const abandon = (): void => { client.destroy() }
    client.once('error', abandon)
    connectBackend(backends.length, (backend) => {
      client.off('error', abandon)
      if (backend === undefined || client.destroyed) {
        backend?.destroy()
        client.destroy()
        return
      }
      // Either side closing or failing ends the pair, so each end sees the other go as it would with no proxy between.
      const closeBoth = (): void => { client.destroy(); backend.destroy() }
      for (const socket of [client, backend]) {
        socket.once('error', closeBoth)
        socket.once('close', closeBoth)
      }
      client.pipe(backend)
      backend.pipe(client)
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP port')

  return {
    port: address.port,
    url: `http://127.0.0.1:${address.port}`,
    connectionsPerBackend: () => [...counts],
    stop: async () => {
      const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      for (const socket of sockets) socket.destroy()
      await closed
    }
  }
}
