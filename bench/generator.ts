/**
 * A load-generator process, forked by generators.ts: up to
 * MAX_PEERS_PER_PROCESS of a join/idle scenario's peers (lightweight
 * Engine.IO v3 clients, eio3-client.ts), connecting from its own slice of
 * loopback source addresses, so that neither one process's open files nor
 * one address's ephemeral ports bound the scenario. It joins them when told,
 * reports its progress and tally, and its fleet's state when asked; the
 * bench keeps the clock (bound, stall). See generator-ipc.ts for the messages.
 */
import { inspect } from 'node:util'
import { Fleet } from './fleet.js'
import { isToGenerator, type FleetStatus, type FromGenerator, type ToGenerator } from './generator-ipc.js'
import { JoinRun, plainJoin } from './joins.js'

const PROGRESS_EVERY_MS = 250

const fleet = new Fleet()
let run: JoinRun | undefined

function post (message: FromGenerator): void {
  process.send?.(message)
}

function fail (error: string): void {
  post({ type: 'failed', error })
}

function status (): FleetStatus {
  return { connected: fleet.connected, dropped: fleet.dropped, peerMessages: fleet.peerMessages, dropReasons: Object.fromEntries(fleet.dropReasons) }
}

function handle (message: ToGenerator): void {
  switch (message.type) {
    case 'join': {
      if (run !== undefined) { fail('asked to join a second time'); return }
      const current = new JoinRun(message.port, fleet, message.peers, plainJoin, { concurrency: message.concurrency, sources: message.sources })
      run = current
      const ticker = setInterval(() => { post({ type: 'progress', joined: current.latencies.length, failed: current.failed }) }, PROGRESS_EVERY_MS)
      void current.done.then(() => {
        clearInterval(ticker)
        post({ type: 'joined', tally: current.tally(), fleet: status() })
      })
      return
    }
    case 'stop-joining':
      run?.stop()
      return
    case 'status':
      post({ type: 'status', id: message.id, ...status() })
  }
}

process.on('message', (message: unknown) => {
  if (!isToGenerator(message)) { fail(`unexpected message ${inspect(message)}`); return }
  handle(message)
})
// the bench has gone (ended, crashed or killed): so does this process, and its connections with it
process.on('disconnect', () => { process.exit(0) })
post({ type: 'ready' })
