/**
 * Every default and bound of the server, with its unit. Each one is also an
 * option (see options.ts); these are the values used when it is not given.
 */

const second = 1000
const minute = 60 * second
const KiB = 1024
const MiB = 1024 * KiB

/** Port of the CLI (the old `rendezvous` command's default). */
export const CLI_PORT = 9090
/** Port of `start()` when none is given (the old library's default). */
export const LIBRARY_PORT = 13579
/** Interface to listen on. */
export const HOST = '0.0.0.0'

/** How often each joined address is announced again to every other peer. */
export const REFRESH_PEER_LIST_INTERVAL_MS = 10 * second

/** How long a crypto challenge waits for its signature before it is dropped. */
export const CHALLENGE_TTL_MS = 1 * minute
/** Unanswered crypto challenges one connection may have at once. */
export const MAX_PENDING_CHALLENGES_PER_CONNECTION = 16

/** Longest address string accepted; real websocket-star addresses are ~120 characters. */
export const MAX_ADDRESS_LENGTH = 1 * KiB
/** Longest `data` argument of `ss-join`: an RSA-4096 public key is ~1.1 KiB of hex. */
export const MAX_JOIN_DATA_LENGTH = 8 * KiB

/** Largest Socket.IO message (or polling request) a client may send; relayed chunks of 1 MiB must fit. */
export const MAX_MESSAGE_BYTES = 4 * MiB

/** Socket.IO path, fixed by the client. */
export const SOCKET_IO_PATH = '/socket.io'

/** Socket.IO room of every connection that holds at least one address. */
export const JOINED_ROOM = 'joined'

/**
 * The discovery scheduler wakes this often at most, announcing a slice of the
 * joined addresses each time, so that a refresh interval's announcements are
 * spread evenly over the interval instead of going out in one burst.
 */
export const DISCOVERY_TICK_MAX_MS = 100
/** ...and at least this long apart, for very short refresh intervals. */
export const DISCOVERY_TICK_MIN_MS = 5
/**
 * New joins wait this long at least before they are announced, so that joins
 * arriving together go out in one batch...
 */
export const DISCOVERY_FRESH_DELAY_MIN_MS = 2
/**
 * ...and this much longer per listening connection (up to one tick), since
 * each batch costs one write per listener: 1,000 listeners wait 50 ms, so
 * those writes stay a small share of a core however fast peers join.
 */
export const DISCOVERY_FRESH_DELAY_PER_LISTENER_MS = 0.05

/** How long a dial waits for the listener's answer and for both streams to be accepted. */
export const DIAL_TIMEOUT_MS = 30 * second
/** Bytes waiting for one receiver above which the server stops reading from its senders. */
export const RELAY_HIGH_WATER_BYTES = 1 * MiB
/** The low-water mark, below which they are read again, is this fraction of the high-water mark. */
export const RELAY_LOW_WATER_RATIO = 1 / 4
/** Relayed streams one connection may take part in at once (a dial makes two). */
export const MAX_STREAMS_PER_CONNECTION = 256
/** Bytes one dial may relay, both ways together; 0 means no limit. */
export const MAX_RELAY_BYTES = 0
/** How long one dial may stay open; 0 means no limit. */
export const MAX_RELAY_DURATION_MS = 0
/** On SIGTERM or SIGINT, how long relayed streams in flight may go on before they are ended. */
export const SHUTDOWN_GRACE_PERIOD_MS = 10 * second
/**
 * Discovery deliveries (one `ws-peer` to one peer) per second at most. A
 * refresh round costs peers × (peers − 1): beyond this budget the refresh
 * interval stretches. Measured on a 2-core machine (README, Performance).
 */
export const MAX_ANNOUNCEMENTS_PER_SECOND = 600_000
/** Addresses listed in a join's answer at most; a random sample when more are joined. */
export const MAX_PEERS_IN_JOIN_REPLY = 1000
/** Peers an announcement batch is written to per turn of the event loop, so that a batch to many peers never holds the loop for long. */
export const FANOUT_SLICE_SOCKETS = 500
/** A peer with this much unsent output is skipped by announcements (they are refreshes). */
export const SLOW_PEER_ANNOUNCE_BYTES = 256 * KiB

/** Addresses one connection may hold at once (the real client holds one). */
export const MAX_ADDRESSES_PER_CONNECTION = 16
/** Joined addresses the server accepts in all; 0 means no limit. */
export const MAX_PEERS = 0
/** Open connections from one remote address; 0 means no limit (peers share NAT addresses). */
export const MAX_CONNECTIONS_PER_IP = 0
/** `ss-join` requests per second per connection, with bursts of twice as many (a listen takes two). */
export const MAX_JOINS_PER_SECOND = 20
/** `ss-dial` requests per second per connection, with bursts of twice as many. */
export const MAX_DIALS_PER_SECOND = 50
/** How long a connection may stay without holding an address; 0 means forever. */
export const JOIN_TIMEOUT_MS = 1 * minute
/** Output a peer may leave unread before it is disconnected and everything it held is freed. */
export const MAX_UNSENT_BYTES = 8 * MiB
/** How often a connection's slack is checked: join timeout, unsent output. */
export const LIMITS_SWEEP_MS = 1 * second
/** Engine.IO heartbeat: a ping every interval, and a peer silent for interval + timeout is gone. */
export const PING_INTERVAL_MS = 25 * second
export const PING_TIMEOUT_MS = 20 * second

/** Cluster mode: a node whose heartbeat key has not been refreshed for this long is dead, and its peers are purged. */
export const CLUSTER_NODE_TIMEOUT_MS = 30 * second
/** How far the discovery budget may run ahead or into debt, in seconds of budget. */
export const DISCOVERY_BUDGET_BURST_SECONDS = 0.2
