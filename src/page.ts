/**
 * The status page at `GET /`: the websocket-star multiaddr a peer should use
 * for this server, derived from the request's host and port as the old page
 * did (and the webrtc-star one, when it is served), and live figures.
 * Self-contained: no external assets.
 */
import { isIPv4, isIPv6 } from 'node:net'

export interface PageFigures {
  /** websocket-star peers... */
  peers: number
  /** ...and webrtc-star ones, when it is served. */
  webrtcStarPeers?: number
  connections: number
  relayedStreams: number
  uptimeSeconds: number
  version: string
}

/**
 * `/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star` from a Host header such as
 * `1.2.3.4:9090`, `[::1]:9090` or `example.com`.
 */
export function websocketStarAddress (hostHeader: string, secure: boolean): string {
  let host = hostHeader
  let port = ''
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostHeader)
  if (bracketed !== null) {
    // at(): the port group is optional, so it may be missing
    host = bracketed.at(1) ?? ''
    port = bracketed.at(2) ?? ''
  } else {
    const colon = hostHeader.lastIndexOf(':')
    if (colon > 0 && hostHeader.indexOf(':') === colon) {
      host = hostHeader.slice(0, colon)
      port = hostHeader.slice(colon + 1)
    }
  }
  // a header that is not host[:port] still yields a usable address
  if (!/^\d{1,5}$/.test(port)) port = secure ? '443' : '80'
  const proto = isIPv4(host) ? 'ip4' : isIPv6(host) ? 'ip6' : 'dns4'
  return `/${proto}/${host}/tcp/${port}/${secure ? 'wss' : 'ws'}/p2p-websocket-star`
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c)
}

function formatUptime (seconds: number): string {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor(seconds % 86400 / 3600)
  const m = Math.floor(seconds % 3600 / 60)
  const s = Math.floor(seconds % 60)
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m ${s}s` : `${m}m ${s}s`
}

/** The webrtc-star multiaddr of the same server: the websocket-star one with `p2p-webrtc-star` at its end. */
export function webrtcStarAddress (websocketStar: string): string {
  return websocketStar.replace(/\/p2p-websocket-star$/, '/p2p-webrtc-star')
}

export function renderPage (address: string, figures: PageFigures): string {
  const webrtc = figures.webrtcStarPeers === undefined
    ? ''
    : `<p>and a libp2p-webrtc-star (or @libp2p/webrtc-star) node, for WebRTC signalling, with:</p>
<code id="webrtc-star-addr">${escapeHtml(webrtcStarAddress(address))}</code>
`
  const rows: Array<[string, string, string]> = [
    ['peers', figures.webrtcStarPeers === undefined ? 'Peers online' : 'websocket-star peers', String(figures.peers)],
    ...(figures.webrtcStarPeers === undefined ? [] : [['webrtc-star', 'webrtc-star peers', String(figures.webrtcStarPeers)] satisfies [string, string, string]]),
    ['connections', 'Connections', String(figures.connections)],
    ['relays', 'Relayed streams', String(figures.relayedStreams)],
    ['uptime', 'Uptime', formatUptime(figures.uptimeSeconds)],
    ['version', 'Version', figures.version]
  ]
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>libp2p websocket-star rendezvous</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:1.5rem;background:#f6f7f9;color:#1d2330;line-height:1.5}
main{max-width:40rem;margin:0 auto}
h1{font-size:1.4rem;margin:0 0 .5rem}
p{margin:.5rem 0 1rem}
code{display:block;background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.75rem;font-size:.95rem;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.75rem;margin:1.25rem 0 0}
dl div{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.75rem}
dt{font-size:.8rem;color:#5b6472}
dd{margin:0;font-size:1.3rem;font-weight:600}
</style>
</head>
<body>
<main>
<h1>libp2p websocket-star rendezvous server</h1>
<p>Peers in browsers and behind firewalls meet here to discover and reach each other. Add this server to a libp2p-websocket-star node with the address:</p>
<code id="addr">${escapeHtml(address)}</code>
${webrtc}<dl>
${rows.map(([id, label, value]) => `<div><dt>${label}</dt><dd id="${id}">${escapeHtml(value)}</dd></div>`).join('\n')}
</dl>
</main>
</body>
</html>
`
}
