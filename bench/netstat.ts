/**
 * The kernel's TCP counters (/proc/net/netstat), machine-wide: whether a
 * burst of connections overflowed a listening socket's accept queue (the
 * SYNs are then dropped and the clients send them again 1, 3, 7 s later).
 */
import { readFileSync } from 'node:fs'

export const TCP_COUNTERS = ['ListenOverflows', 'ListenDrops', 'TCPSynRetrans', 'SyncookiesSent', 'TCPReqQFullDrop'] as const
export type TcpCounters = Record<typeof TCP_COUNTERS[number], number>

export function tcpCounters (): TcpCounters {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = (lines[0] ?? '').split(/\s+/).slice(1)
  const values = (lines[1] ?? '').split(/\s+/).slice(1).map(Number)
  const counters = {} as TcpCounters
  for (const name of TCP_COUNTERS) counters[name] = values[names.indexOf(name)] ?? Number.NaN
  return counters
}

/** How much each counter grew since `before`. */
export function tcpCountersSince (before: TcpCounters): TcpCounters {
  const now = tcpCounters()
  const grown = {} as TcpCounters
  for (const name of TCP_COUNTERS) grown[name] = now[name] - before[name]
  return grown
}
