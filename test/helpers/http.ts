/**
 * Plain HTTP(S) requests for tests that need what fetch() forbids: a chosen
 * Host header, or a self-signed certificate.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
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
}

export async function request (url: string, { method = 'GET', headers = {}, insecure = false }: RequestOptions = {}): Promise<Response> {
  const secure = url.startsWith('https:')
  return await within(new Promise<Response>((resolve, reject) => {
    const options = { method, headers, ...(secure && insecure ? { rejectUnauthorized: false } : {}) }
    const req = (secure ? httpsRequest : httpRequest)(url, options, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  }), `${method} ${url}`)
}
