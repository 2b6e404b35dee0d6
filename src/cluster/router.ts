/**
 * Cluster mode's wiring: hands each message from another node, checked by
 * messages.ts, to the part that owns it, and tells the parts when a node is
 * gone or Redis is back. A failure in a handler is a log line, never fatal.
 */
import type { Discovery } from '../discovery.js'
import type { Joins } from '../join.js'
import { logError } from '../log.js'
import { starOf, type PeerSocket } from '../protocol.js'
import type { Registry } from '../registry.js'
import type { Relay } from '../relay/index.js'
import type { Signalling } from '../signalling.js'
import { isToDialerNode, isToListenerNode, type NodeMessage } from './messages.js'
import type { ClusterNode } from './node.js'

export interface RouterComponents {
  node: ClusterNode
  registry: Registry<PeerSocket>
  joins: Pick<Joins, 'takenElsewhere'>
  relay: Pick<Relay, 'proxy' | 'remote' | 'nodeGone'>
  discovery: Pick<Discovery, 'deliver'>
  /** Undefined when webrtc-star is off here. */
  signalling: Pick<Signalling, 'deliver'> | undefined
}

/** Runs `fn`, logging what it throws or rejects with. */
function guard (what: string, fn: () => void | Promise<void>): void {
  const failed = (err: unknown): void => { logError('cluster: %s failed: %O', what, err) }
  try {
    void Promise.resolve(fn()).catch(failed)
  } catch (err) {
    failed(err)
  }
}

export class ClusterRouter {
  constructor (private readonly components: RouterComponents) {
    const { node, registry, joins, relay } = components
    node.on('message', (from, message) => { guard(`message ${message.t}`, () => { this.route(from, message) }) })
    node.on('nodeGone', (gone) => { guard('ending streams of a gone node', () => { relay.nodeGone(gone) }) })
    // (re)connected: put this node's peers back in the shared registry
    node.on('up', () => {
      guard('re-registering peers', async () => {
        const lost = await node.register([...registry.entries()].map(([address, socket]) => [address, socket.id]))
        for (const [address, id] of lost) joins.takenElsewhere(address, id)
      })
    })
  }

  private route (from: string, message: Exclude<NodeMessage, { t: 'gone' }>): void {
    const { joins, relay, discovery, signalling } = this.components
    if (isToListenerNode(message)) relay.proxy?.receive(from, message)
    else if (isToDialerNode(message)) relay.remote?.receive(from, message)
    else if (message.t === 'taken') joins.takenElsewhere(message.address, message.sid)
    else if (message.t === 'signal') signalling?.deliver(message.sid, message.to, message.offer)
    else discovery.deliver(message.addresses.map((address) => ({ address, ownerId: '', star: starOf(address) })), message.fresh)
  }
}
