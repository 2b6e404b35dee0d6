/** TCP ports of 127.0.0.1 for tests: one nobody uses, and whether one is free again. */
import { createServer } from 'node:net'

/** Listens on `port` (0: the kernel's pick) and closes again; resolves with the port, rejects if it is taken. */
async function probe (port: number): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { resolve() })
  })
  const address = server.address()
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') throw new Error('no TCP port')
  return address.port
}

/** A port nothing listens on right now. */
export async function freePort (): Promise<number> {
  return await probe(0)
}

/** Resolves if `port` can be listened on again (it was released), rejects with EADDRINUSE otherwise. */
export async function canBind (port: number): Promise<void> {
  await probe(port)
}
