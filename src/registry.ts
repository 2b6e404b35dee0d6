/**
 * Which connection holds which address. An address belongs to at most one
 * connection; a connection may hold several addresses. This module is the
 * only one that adds to or removes from these maps.
 */
import { starOf, type Star } from './protocol.js'

/** A connection, as the registry knows it: by its id. */
export interface Connection {
  readonly id: string
}

export class Registry<S extends Connection> {
  private readonly holders = new Map<string, S>()
  private readonly byConnection = new Map<string, Set<string>>()
  private readonly counts: Record<Star, number> = { 'websocket-star': 0, 'webrtc-star': 0 }

  /** Joined addresses. */
  get size (): number {
    return this.holders.size
  }

  /** Joined addresses of one transport. */
  sizeOf (star: Star): number {
    return this.counts[star]
  }

  /** Connections holding at least one address. */
  get connections (): number {
    return this.byConnection.size
  }

  holderOf (address: string): S | undefined {
    return this.holders.get(address)
  }

  holds (connection: S, address: string): boolean {
    return this.holders.get(address)?.id === connection.id
  }

  addressesOf (connectionId: string): ReadonlySet<string> | undefined {
    return this.byConnection.get(connectionId)
  }

  entries (): IterableIterator<[string, S]> {
    return this.holders.entries()
  }

  /**
   * Gives `address` to `connection`. Returns the connection that held it
   * before, if it was another one: that one has lost it.
   */
  claim (address: string, connection: S): S | undefined {
    const previous = this.holders.get(address)
    if (previous?.id === connection.id) return undefined
    if (previous !== undefined) this.unlink(previous.id, address)
    else this.counts[starOf(address)]++
    this.holders.set(address, connection)
    let held = this.byConnection.get(connection.id)
    if (held === undefined) {
      held = new Set()
      this.byConnection.set(connection.id, held)
    }
    held.add(address)
    return previous
  }

  /** Takes `address` from `connection` if it holds it; true if it did. */
  release (address: string, connection: S): boolean {
    if (this.holders.get(address)?.id !== connection.id) return false
    this.holders.delete(address)
    this.counts[starOf(address)]--
    this.unlink(connection.id, address)
    return true
  }

  /** Takes every address from a connection; returns them. */
  releaseAll (connectionId: string): string[] {
    const held = this.byConnection.get(connectionId)
    if (held === undefined) return []
    this.byConnection.delete(connectionId)
    const released = [...held]
    for (const address of released) {
      this.holders.delete(address)
      this.counts[starOf(address)]--
    }
    return released
  }

  private unlink (connectionId: string, address: string): void {
    const held = this.byConnection.get(connectionId)
    if (held === undefined) return
    held.delete(address)
    if (held.size === 0) this.byConnection.delete(connectionId)
  }
}
