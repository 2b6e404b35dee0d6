/**
 * The fixed numbers and names of the server, with their units: none of them
 * is an option. The options, with their defaults and bounds, are declared in
 * options.ts; to make one of these settable, move it there.
 */

/** Units, for writing durations and sizes here and in options.ts. */
export const second = 1000
export const minute = 60 * second
export const KiB = 1024
export const MiB = 1024 * KiB

/** Socket.IO path, fixed by the client. */
export const SOCKET_IO_PATH = '/socket.io'

/** webrtc-star's second Socket.IO path, of its v4 clients (`/socket.io` serves its older ones). */
export const WEBRTC_STAR_SOCKET_IO_PATH = '/socket.io-next'

/** Socket.IO rooms of the connections that hold at least one address, one room per transport. */
export const JOINED_ROOMS = { 'websocket-star': 'joined', 'webrtc-star': 'joined-webrtc-star' } as const

/** Longest address string accepted; real websocket-star addresses are ~120 characters. */
export const MAX_ADDRESS_LENGTH = 1 * KiB
/** Longest `data` argument of `ss-join`: an RSA-4096 public key is ~1.1 KiB of hex. */
export const MAX_JOIN_DATA_LENGTH = 8 * KiB
/** Longest dial id accepted, in characters; the client sends a 36-character uuid. */
export const MAX_DIAL_ID_LENGTH = 128
/** Longest webrtc-star dial id (`intentId`) accepted; the clients send a uuid. */
export const MAX_INTENT_ID_LENGTH = 128
/**
 * Longest webrtc-star signal, in characters of its JSON: an SDP offer with
 * its ICE candidates is 1–4 KiB, a trickled candidate a few hundred bytes.
 */
export const MAX_SIGNAL_LENGTH = 16 * KiB
/** Characters of an error message from a peer (a stream's end or a dial refusal) passed on to the other peer. */
export const MAX_PEER_ERROR_LENGTH = 1 * KiB
/** Characters of an event or stream name from the network written to the log. */
export const MAX_LOGGED_NAME_LENGTH = 200

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
/** How far the discovery budget may run ahead or into debt, in seconds of budget. */
export const DISCOVERY_BUDGET_BURST_SECONDS = 0.2
/** Peers an announcement batch is written to per turn of the event loop, so that a batch to many peers never holds the loop for long. */
export const FANOUT_SLICE_SOCKETS = 500
/** A peer with this much unsent output, in bytes, is skipped by announcements (they are refreshes). */
export const SLOW_PEER_ANNOUNCE_BYTES = 256 * KiB

/** The relay's low-water mark, below which paused senders are read again, is this fraction of its high-water mark. */
export const RELAY_LOW_WATER_RATIO = 1 / 4

/** How often a connection's slack is checked (join timeout, unsent output), in ms. */
export const LIMITS_SWEEP_MS = 1 * second
/** How often a paused connection's heartbeat deadline is pushed back, in ms. */
export const HEARTBEAT_HOLD_MS = 1 * second
/** How long stop() lets queued output reach clients, and clients answer the close, before it cuts their connections, in ms. */
export const STOP_FLUSH_MS = 1 * second

/** Cluster mode: how long `connect` waits for Redis before the node starts alone (degraded), in ms. */
export const CLUSTER_CONNECT_PATIENCE_MS = 5 * second
/** Cluster mode: reconnection attempt n (ioredis counts from 1) waits this × 2ⁿ ms (200 ms, 400 ms...), up to `CLUSTER_RECONNECT_MAX_DELAY_MS`. */
export const CLUSTER_RECONNECT_BASE_DELAY_MS = 100
/** Cluster mode: longest wait between two reconnection attempts, in ms. */
export const CLUSTER_RECONNECT_MAX_DELAY_MS = 5 * second
/** Cluster mode: the heartbeat runs every third of `clusterNodeTimeoutMS`, but at least this far apart, in ms. */
export const CLUSTER_HEARTBEAT_MIN_MS = 100

/** `--workers`: a worker that dies sooner than this after it was started is crashing: its restarts back off, in ms. */
export const WORKER_CRASH_WINDOW_MS = 10 * second
/** `--workers`: wait before restarting a crashing worker, in ms; it doubles with each quick crash, up to `WORKER_RESTART_MAX_DELAY_MS`. */
export const WORKER_RESTART_FIRST_DELAY_MS = 1 * second
/** `--workers`: longest wait before restarting a crashing worker, in ms. */
export const WORKER_RESTART_MAX_DELAY_MS = 30 * second
/**
 * `--workers`: how long a worker's `/metrics` waits for the primary's sum over
 * all workers, in ms; prom-client gives up on a worker that does not answer
 * after 5 s, so the primary's error normally comes first.
 */
export const WORKER_SCRAPE_TIMEOUT_MS = 7 * second

/** `--peerPolicy`: changes to the file closer together than this make one reload, in ms (an editor's save is several events). */
export const POLICY_WATCH_DEBOUNCE_MS = 100

/** A certificate file changed: wait this long for its companions (key, then cert) before reading them again. */
export const CERTIFICATE_RELOAD_DEBOUNCE_MS = 200

/** `GET /admin/peers`: addresses listed per page unless `?limit=` says otherwise, and at most. */
export const ADMIN_PAGE_DEFAULT = 100
export const ADMIN_PAGE_MAX = 1000

/** `--adminToken`: the shortest token taken, in characters (16 random ones are beyond guessing over HTTP). */
export const MIN_TOKEN_LENGTH = 16
