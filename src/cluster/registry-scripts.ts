/**
 * The cluster's shared registry in Redis: which node and connection holds
 * each address. It is changed only by these Lua scripts, so that each change
 * is one atomic step.
 *
 * - `rendezvous:peers` (hash): address → "<node> <connection>".
 * - `rendezvous:node:<node>:peers` (set): the addresses a node registered.
 * - `rendezvous:nodes` (set): the nodes that have a heartbeat key.
 */
import type { Redis } from 'ioredis'
import type { Holder } from './remote-listener.js'

const PREFIX = 'rendezvous'
export const PEERS_KEY = `${PREFIX}:peers`
export const NODES_KEY = `${PREFIX}:nodes`
/** A node's heartbeat key is this prefix and its id; the Lua scripts build it the same way. */
export const NODE_KEY_PREFIX = `${PREFIX}:node:`
export const nodeKey = (node: string): string => `${NODE_KEY_PREFIX}${node}`
export const nodePeersKey = (node: string): string => `${NODE_KEY_PREFIX}${node}:peers`
/** The sharded channel of one node's messages. */
export const nodeChannel = (node: string): string => `${PREFIX}#node#${node}#`
/** The Socket.IO adapter's channel prefix. */
export const CHANNEL_PREFIX = PREFIX

const SCRIPTS = {
  /** Gives an address to a holder; returns the previous holder's value. */
  claim: `
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if old and old ~= ARGV[2] then
  local node = string.match(old, '^(%S+) ')
  if node and node ~= ARGV[3] then redis.call('SREM', ARGV[4] .. node .. ':peers', ARGV[1]) end
end
return old`,
  /** Registers again after an outage, unless a live holder took the address meanwhile; returns that holder. */
  register: `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] then
  local node = string.match(old, '^(%S+) ')
  if node and redis.call('EXISTS', ARGV[4] .. node) == 1 then return old end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return false`,
  /** Takes an address from a holder, if it still holds it. */
  release: `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('SREM', KEYS[2], ARGV[1])
return 1`,
  /** Removes a dead node: its addresses (those it still holds) and its entries. */
  purge: `
local addresses = redis.call('SMEMBERS', KEYS[2])
local prefix = ARGV[1] .. ' '
local removed = 0
for _, address in ipairs(addresses) do
  local holder = redis.call('HGET', KEYS[1], address)
  if holder and string.sub(holder, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], address)
    removed = removed + 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return removed`
} as const

/** The Redis client with the scripts defined (`defineScripts`). */
export interface ScriptedRedis extends Redis {
  rdvClaim: (peers: string, nodePeers: string, address: string, holder: string, node: string, nodePrefix: string) => Promise<string | null>
  rdvRegister: (peers: string, nodePeers: string, address: string, holder: string, node: string, nodePrefix: string) => Promise<string | null>
  rdvRelease: (peers: string, nodePeers: string, address: string, holder: string) => Promise<number>
  rdvPurge: (peers: string, nodePeers: string, nodes: string, node: string) => Promise<number>
}

/** A holder as the registry writes it (`holderValue`), read back. */
export function parseHolder (value: string | null | undefined): Holder | undefined {
  if (typeof value !== 'string') return undefined
  const space = value.indexOf(' ')
  if (space <= 0) return undefined
  return { node: value.slice(0, space), connection: value.slice(space + 1) }
}

/** How the registry names connection `connection` of node `node`. */
export function holderValue (node: string, connection: string): string {
  return `${node} ${connection}`
}

/** Defines the scripts on a client, as `rdvClaim`, `rdvRegister`, `rdvRelease` and `rdvPurge`. */
export function defineScripts (client: Redis): ScriptedRedis {
  client.defineCommand('rdvClaim', { numberOfKeys: 2, lua: SCRIPTS.claim })
  client.defineCommand('rdvRegister', { numberOfKeys: 2, lua: SCRIPTS.register })
  client.defineCommand('rdvRelease', { numberOfKeys: 2, lua: SCRIPTS.release })
  client.defineCommand('rdvPurge', { numberOfKeys: 3, lua: SCRIPTS.purge })
  return client as ScriptedRedis
}
