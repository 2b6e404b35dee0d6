/**
 * What a restart herd's peers went through, counted once the restart's times
 * are known: which failed attempts were retries while no server could take
 * them, and which were failures of the restarted server.
 */
import type { AttemptError, HerdLog, ReconnectingPeer, RejoinStages } from './reconnecting-peer.js'
import { percentile } from './stats.js'

/** The restart's times the counting needs, epoch ms. */
export interface RestartTimes { exitedAt: number, listeningAt: number }

/** Failed attempts of one kind: how many, and up to a few messages with their counts. */
export interface Attempts { count: number, messages: Record<string, number> }

export interface HerdCounts {
  /** Peers whose connection the restart closed, and how the server closed them. */
  closed: number
  closeReasons: Record<string, number>
  /** Peers that had joined again, each counted once. */
  rejoined: number
  /** Connection attempts in all. */
  attempts: number
  /** Failed attempts that went out before the stopping server had exited (it refuses new handshakes): retried. */
  retriesWhileStopping: Attempts
  /** Connections refused after it exited, before the new one listened: retried. */
  retriesPortClosed: Attempts
  /**
   * Failures of the restarted server, each retried: attempts started after the
   * old process exited that were refused once it listened, cut or left
   * unanswered, joins answered with an error, connections dropped after
   * joining again, and Socket.IO DISCONNECTs (socket.io-client 2.x never comes
   * back from one).
   */
  failures: number
  failuresByKind: Record<string, Attempts>
  /** The successful attempts' stages (reconnecting-peer.ts), p50 / p99 / max in ms, and how many waited ≥ 900 ms for TCP (a dropped SYN is sent again after 1 s). */
  stagesMs: Record<keyof RejoinStages, { p50: number | undefined, p99: number | undefined, max: number | undefined }>
  tcpConnectsOver900Ms: number
}

interface Failed { startedAt: number, kind: AttemptError, message: string }

class Tally {
  count = 0
  private readonly messages = new Map<string, number>()
  add (message: string): void {
    this.count++
    this.messages.set(message, (this.messages.get(message) ?? 0) + 1)
  }

  get attempts (): Attempts {
    return { count: this.count, messages: Object.fromEntries([...this.messages].sort((a, b) => b[1] - a[1]).slice(0, 5)) }
  }
}

export class Herd implements HerdLog {
  /** Epoch ms of each peer's first join after the restart, in order. */
  readonly rejoinTimes: number[] = []
  private readonly rejoinedPeers = new Set<ReconnectingPeer>()
  private readonly stages: RejoinStages[] = []
  private readonly failedAttempts: Failed[] = []
  private readonly closes = new Map<string, number>()
  private dropsAfterRejoin = 0
  private stranded = 0

  get rejoined (): number {
    return this.rejoinedPeers.size
  }

  closed (peer: ReconnectingPeer, reason: string, final: boolean): void {
    if (peer.joinedAt === undefined) this.closes.set(reason, (this.closes.get(reason) ?? 0) + 1)
    if (final) this.stranded++
    else if (peer.joinedAt !== undefined) this.dropsAfterRejoin++
  }

  failed (_peer: ReconnectingPeer, startedAt: number, kind: AttemptError, message: string): void {
    this.failedAttempts.push({ startedAt, kind, message })
  }

  joined (peer: ReconnectingPeer, stages: RejoinStages): void {
    this.stages.push(stages)
    if (this.rejoinedPeers.has(peer)) return
    this.rejoinedPeers.add(peer)
    this.rejoinTimes.push(peer.joinedAt as number)
  }

  counts (restart: RestartTimes, attempts: number): HerdCounts {
    const whileStopping = new Tally()
    const portClosed = new Tally()
    const failures = new Map<string, Tally>()
    const fail = (kind: string, message: string): void => {
      const tally = failures.get(kind) ?? new Tally()
      failures.set(kind, tally)
      tally.add(message)
    }
    for (const f of this.failedAttempts) {
      if (f.startedAt < restart.exitedAt) whileStopping.add(`${f.kind}: ${f.message}`)
      else if (f.kind === 'port closed' && f.startedAt < restart.listeningAt) portClosed.add(f.message.replace(/:\d+$/, ''))
      else fail(f.kind, f.message)
    }
    for (let i = 0; i < this.dropsAfterRejoin; i++) fail('dropped after joining again', 'dropped')
    for (let i = 0; i < this.stranded; i++) fail('Socket.IO DISCONNECT (no reconnect)', 'disconnected by the server')
    let closed = 0
    for (const n of this.closes.values()) closed += n
    const stage = (key: keyof RejoinStages): { p50: number | undefined, p99: number | undefined, max: number | undefined } => {
      const values = this.stages.map((s) => s[key])
      return { p50: percentile(values, 50), p99: percentile(values, 99), max: values.length === 0 ? undefined : Math.max(...values) }
    }
    return {
      closed,
      closeReasons: Object.fromEntries(this.closes),
      rejoined: this.rejoined,
      attempts,
      retriesWhileStopping: whileStopping.attempts,
      retriesPortClosed: portClosed.attempts,
      failures: [...failures.values()].reduce((a, t) => a + t.count, 0),
      failuresByKind: Object.fromEntries([...failures].map(([kind, t]) => [kind, t.attempts])),
      stagesMs: { tcpMs: stage('tcpMs'), openMs: stage('openMs'), joinMs: stage('joinMs') },
      tcpConnectsOver900Ms: this.stages.filter((s) => s.tcpMs >= 900).length
    }
  }
}
