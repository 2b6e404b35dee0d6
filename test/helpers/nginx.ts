/**
 * nginx in front of cluster nodes, with the very configuration
 * docker-compose.yml ships (the block under `configs: nginx: content: |`),
 * pointed at this test's nodes and wrapped in a top-level configuration of
 * its own directory. Without nginx the tests that need it skip with
 * `NO_NGINX` as the reason.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { executable, findExecutable } from './executable.js'
import { freePort } from './ports.js'
import { PATIENCE_MS } from './server.js'

const COMPOSE_FILE = fileURLToPath(new URL('../../../docker-compose.yml', import.meta.url))

/**
 * nginx, if installed: `NGINX_PATH` if set, else /usr/bin/nginx or nginx on
 * PATH (findExecutable's search), else /usr/sbin/nginx, where Debian puts it.
 */
export const NGINX_EXECUTABLE: string | undefined = findExecutable('nginx', 'NGINX_PATH') ??
  (process.env.NGINX_PATH === undefined && executable('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined)

/** A skip reason for `describe(..., { skip: NO_NGINX })`, or false when nginx is there. */
export const NO_NGINX: string | false = NGINX_EXECUTABLE === undefined
  ? `nginx not installed: no executable at ${process.env.NGINX_PATH !== undefined ? `NGINX_PATH=${process.env.NGINX_PATH}` : '/usr/sbin/nginx, /usr/bin/nginx or nginx on PATH'} (apt-get install nginx)`
  : false

/** TRUST_PROXY as docker-compose.yml sets it for the nodes behind its nginx, as `start()` takes it. */
export function composeTrustProxy (): number | string {
  const match = /^\s+TRUST_PROXY: "([^"]+)"\s*$/m.exec(readFileSync(COMPOSE_FILE, 'utf8'))
  if (match?.[1] === undefined) throw new Error(`no TRUST_PROXY in ${COMPOSE_FILE}`)
  return /^\d+$/.test(match[1]) ? Number(match[1]) : match[1]
}

/** The nginx configuration of docker-compose.yml, dedented, with Compose's `$$` as nginx's `$`. */
export function composeNginxConfig (): string {
  const lines = readFileSync(COMPOSE_FILE, 'utf8').split('\n')
  const start = lines.findIndex((line, i) => /^\s+content: \|\s*$/.test(line) && lines.slice(0, i).some((l) => /^configs:/.test(l)))
  if (start === -1) throw new Error(`no configs: nginx: content: | block in ${COMPOSE_FILE}`)
  const block: string[] = []
  let indent: number | undefined
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') { block.push(''); continue }
    const own = line.length - line.trimStart().length
    indent ??= own
    if (own < indent) break
    block.push(line.slice(indent))
  }
  return block.join('\n').replaceAll('$$', '$').trimEnd() + '\n'
}

export interface NginxProcess {
  port: number
  url: string
  dir: string
  /** The configuration file it runs. */
  config: string
  /** Its error log so far (level warn and above: nginx's notes on upstreams it took out). */
  errorLog: () => string
  /** SIGQUIT (graceful), then SIGTERM, then SIGKILL if it lingers; waits for the exit. Safe to call twice. */
  stop: () => Promise<void>
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { socket.destroy(); resolve(false) })
  })
}

/** Starts nginx with docker-compose.yml's configuration in front of `nodePorts` (three, as the compose file has). */
export async function startNginx (nodePorts: number[]): Promise<NginxProcess> {
  if (NGINX_EXECUTABLE === undefined) throw new Error(String(NO_NGINX))
  const dir = mkdtempSync(join(tmpdir(), 'rendezvous-nginx-'))
  const port = await freePort()
  let block = composeNginxConfig()
  const upstreams = block.match(/server rendezvous-\d+:9090[^;]*;/g) ?? []
  if (upstreams.length !== nodePorts.length) throw new Error(`compose has ${upstreams.length} upstream servers, the test ${nodePorts.length} nodes`)
  // the line's parameters (max_fails=0) stay
  nodePorts.forEach((nodePort, i) => { block = block.replace(new RegExp(`server rendezvous-${i + 1}:9090([^;]*);`), `server 127.0.0.1:${nodePort}$1;`) })
  if (!block.includes('listen 9090;')) throw new Error('no `listen 9090;` in the compose nginx configuration')
  block = block.replace('listen 9090;', `listen 127.0.0.1:${port};`)
  for (const sub of ['body', 'proxy', 'fcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub))
  const config = [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events {}',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${dir}/body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi;`,
    `  scgi_temp_path ${dir}/scgi;`,
    block.split('\n').map((line) => line === '' ? '' : `  ${line}`).join('\n'),
    '}',
    ''
  ].join('\n')
  const file = join(dir, 'nginx.conf')
  writeFileSync(file, config)
  const proc: ChildProcess = spawn(NGINX_EXECUTABLE, ['-c', file, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => { proc.once('close', () => { resolve() }) })
  // an object, so that the loops below read what the callback wrote
  const nginx = { exited: false }
  void exited.then(() => { nginx.exited = true })
  const errorLog = (): string => { try { return readFileSync(join(dir, 'error.log'), 'utf8') } catch { return '' } }

  const stop = async (): Promise<void> => {
    for (const [signal, waitMs] of [['SIGQUIT', 3000], ['SIGTERM', 2000], ['SIGKILL', PATIENCE_MS]] as const) {
      if (nginx.exited) break
      proc.kill(signal)
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, waitMs))])
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + PATIENCE_MS
  while (!(await accepts(port))) {
    if (nginx.exited || Date.now() > deadline) {
      const log = errorLog()
      await stop()
      throw new Error(`nginx did not listen on ${port}: ${output}\n${log}\n${config}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { port, url: `http://127.0.0.1:${port}`, dir, config, errorLog, stop }
}
