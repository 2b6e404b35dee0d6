/**
 * The HTTP(S) server and its routes. Socket.IO attaches itself to this server
 * and answers `/socket.io/` before these routes see a request.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https'
import debug from 'debug'
import type { AdminAnswer, AdminRequest } from './admin.js'
import type { TlsConfig } from './options.js'

const log = debug('rendezvous:http')

export interface Routes {
  /** `GET /`: HTML, given the websocket-star address derived from the request. */
  page: (hostHeader: string, secure: boolean) => string
  /** `GET /metrics`: undefined when metrics are off (404). */
  metrics: () => Promise<{ contentType: string, body: string } | undefined>
  /** `GET /health`: status code and JSON body. */
  health: () => { status: number, body: unknown }
  /** `/admin/…`: the operator's view (admin.ts), which checks the method and the token. */
  admin: (request: AdminRequest) => Promise<AdminAnswer>
}

/** @param headers more headers; the public routes add CORS for any origin, the operator's view does not */
function send (res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = { 'access-control-allow-origin': '*' }): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers
  })
  res.end(body)
}

async function route (routes: Routes, secure: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/'
  const mark = url.indexOf('?')
  const path = mark < 0 ? url : url.slice(0, mark)
  if (path.startsWith('/admin/')) {
    const answer = await routes.admin({ method: req.method ?? 'GET', path, query: new URLSearchParams(mark < 0 ? '' : url.slice(mark + 1)), authorization: req.headers.authorization })
    // no CORS: the default headers of `send` are the public routes'
    send(res, answer.status, 'application/json', `${JSON.stringify(answer.body)}\n`, answer.headers ?? {})
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain; charset=utf-8', 'Method Not Allowed\n')
    return
  }
  switch (path) {
    case '/': {
      // behind a TLS-terminating proxy the page must still show `wss`
      // the first proxy in a chain saw the client's scheme
      const forwarded = String(req.headers['x-forwarded-proto'] ?? '').split(',')[0]?.trim().toLowerCase()
      const isSecure = secure || forwarded === 'https'
      send(res, 200, 'text/html; charset=utf-8', routes.page(req.headers.host ?? 'localhost', isSecure))
      return
    }
    case '/metrics': {
      const scraped = await routes.metrics()
      if (scraped === undefined) send(res, 404, 'text/plain; charset=utf-8', 'Metrics are disabled\n')
      else send(res, 200, scraped.contentType, scraped.body)
      return
    }
    case '/health': {
      const { status, body } = routes.health()
      send(res, status, 'application/json', JSON.stringify(body))
      return
    }
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'Not Found\n')
  }
}

export function createServer (tls: TlsConfig | undefined, routes: Routes): Server {
  const secure = tls !== undefined
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    route(routes, secure, req, res).catch((err: unknown) => {
      log('error serving %s: %O', req.url, err)
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'Internal Server Error\n')
      else res.destroy()
    })
  }
  return secure ? createHttpsServer(tls, handler) : createHttpServer(handler)
}

/** How to give an HTTPS server new key material for the connections to come; undefined for plain HTTP. */
export function secureContextSetter (server: Server): ((tls: TlsConfig) => void) | undefined {
  if (!(server instanceof HttpsServer)) return undefined
  return (tls) => { server.setSecureContext(tls) }
}
