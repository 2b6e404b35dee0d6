/** A process measured from outside, through procfs, as an operator would. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

/** Resident set size of `pid`, in bytes. */
export function rssBytes (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  if (match?.[1] === undefined) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

/** Samples `pid`'s RSS every `everyMs` until stopped; reports the peak. */
export function watchRss (pid: number, everyMs = 20): { stop: () => number } {
  let peak = rssBytes(pid)
  const timer = setInterval(() => {
    try { peak = Math.max(peak, rssBytes(pid)) } catch {}
  }, everyMs)
  // a test that fails before stop() must not be held open by its sampler until the timeout
  timer.unref()
  return {
    stop: () => {
      clearInterval(timer)
      try { peak = Math.max(peak, rssBytes(pid)) } catch {}
      return peak
    }
  }
}

/** Pids of the running processes whose parent is `pid`, as `ps --ppid` lists them. */
export function childrenOf (pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue
    }
    // the command name, in parentheses, may itself hold spaces and parentheses
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(ppid) === pid && state !== 'Z') children.push(Number(entry))
  }
  return children
}

/**
 * Established TCP connections to local port `port` that `pid` holds open,
 * each as its remote `address:port` in hex as procfs writes it: what
 * `ss -tnp` shows of one process.
 */
export function tcpConnectionsOf (pid: number, port: number): string[] {
  const inodes = new Set<string>()
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return []
  }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (match?.[1] !== undefined) inodes.add(match[1])
    } catch {}
  }
  const localPort = port.toString(16).toUpperCase().padStart(4, '0')
  const remotes: string[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[]
    try {
      lines = readFileSync(table, 'utf8').split('\n').slice(1)
    } catch {
      continue
    }
    for (const line of lines) {
      const fields = line.trim().split(/\s+/)
      const [, local, remote, state] = fields
      // 01: ESTABLISHED
      // (a line with a state has its local and remote address before it)
      if (state === '01' && local.endsWith(`:${localPort}`) && inodes.has(fields[9] ?? '')) remotes.push(remote)
    }
  }
  return remotes
}
