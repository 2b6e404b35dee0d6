/**
 * The load generator's joined peers: many lightweight Engine.IO v3 clients,
 * their `ws-peer` counts and how many of them the server dropped.
 */
import { Eio3Client } from './eio3-client.js'

export class Fleet {
  readonly clients: Eio3Client[] = []
  /** Connections that ended without the generator closing them. */
  dropped = 0
  /** Why the first few of them ended, for the report. */
  readonly dropReasons = new Map<string, number>()

  add (client: Eio3Client): void {
    this.clients.push(client)
    client.onClose = (reason) => {
      if (!client.dropped) return
      this.dropped++
      this.dropReasons.set(reason, (this.dropReasons.get(reason) ?? 0) + 1)
    }
  }

  get size (): number {
    return this.clients.length
  }

  /** Connections still open. */
  get connected (): number {
    let n = 0
    for (const c of this.clients) if (c.connected) n++
    return n
  }

  /** `ws-peer` announcements received by all of them so far. */
  get peerMessages (): number {
    let n = 0
    for (const c of this.clients) n += c.peerMessages
    return n
  }

  destroy (): void {
    for (const c of this.clients) c.destroy()
  }
}
