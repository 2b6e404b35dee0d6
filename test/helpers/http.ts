/**
 * Plain HTTP(S) requests for tests that need what fetch() forbids: a chosen
 * Host header, or a self-signed certificate.
 */
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { within } from './wait.js'

export interface Response {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

export interface RequestOptions {
  method?: string
  headers?: Record<string, string>
  /** For https: accept a self-signed certificate. */
  insecure?: boolean
  /** How long the answer may take (PATIENCE_MS unless given); the request is then aborted. */
  patienceMs?: number
}

export async function request (url: string, { method = 'GET', headers = {}, insecure = false, patienceMs }: RequestOptions = {}): Promise<Response> {
  const secure = url.startsWith('https:')
  let req: ClientRequest | undefined
  return await within(new Promise<Response>((resolve, reject) => {
    const options = { method, headers, ...(secure && insecure ? { rejectUnauthorized: false } : {}) }
    req = (secure ? httpsRequest : httpRequest)(url, options, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  }), `${method} ${url}`, patienceMs).catch((err: unknown) => {
    req?.destroy()
    throw err
  })
}

/** What `/health` answers (`cluster` in cluster mode only). */
export interface Health {
  status: string
  uptime: number
  peers: number
  cluster?: { node: string, redis: string, nodes: number }
}

/** `GET /health` of the server at `url`: its status code and its JSON body. */
export async function health (url: string, patienceMs?: number): Promise<{ status: number, body: Health }> {
  const res = await request(`${url}/health`, { patienceMs })
  return { status: res.status, body: JSON.parse(res.body) as Health }
}
