/**
 * The TLS key and certificate, read again from their files on SIGHUP and when
 * a file changes, and handed to the HTTPS server with `setSecureContext()`:
 * new TLS connections get the new certificate, open ones carry on. A file
 * that cannot be read or that TLS rejects is logged and the old context kept.
 * Material given inline to `start()` has no file and stays as it is.
 */
import { readFile } from 'node:fs/promises'
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import debug from 'debug'
import { CERTIFICATE_RELOAD_DEBOUNCE_MS } from './constants.js'
import { errorMessage, logError } from './log.js'
import type { TlsConfig, TlsFiles } from './options.js'

const log = debug('rendezvous:server')

export class Certificates {
  private current: TlsConfig
  private readonly watchers: FSWatcher[] = []
  private debounce: NodeJS.Timeout | undefined
  /** Reloads run one at a time, in order. */
  private reloading: Promise<void> = Promise.resolve()

  constructor (tls: TlsConfig, private readonly files: TlsFiles, private readonly apply: (tls: TlsConfig) => void) {
    this.current = tls
  }

  /** Watches the directories of the files: a renewal that replaces a file (rename) is seen too. */
  start (): void {
    const paths = Object.values(this.files).filter((path): path is string => path !== undefined)
    for (const dir of new Set(paths.map((path) => dirname(path)))) {
      const names = new Set(paths.filter((path) => dirname(path) === dir).map((path) => basename(path)))
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(name)) this.changed()
        })
        watcher.on('error', (err) => { logError('watching certificates in %s: %s', dir, errorMessage(err)) })
        this.watchers.push(watcher)
      } catch (err) {
        logError('cannot watch certificates in %s (SIGHUP still reloads them): %s', dir, errorMessage(err))
      }
    }
  }

  stop (): void {
    clearTimeout(this.debounce)
    for (const watcher of this.watchers.splice(0)) watcher.close()
  }

  /** Reads the files again and applies them; never rejects. */
  async reload (): Promise<void> {
    this.reloading = this.reloading.then(async () => { await this.load() })
    await this.reloading
  }

  private changed (): void {
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => { void this.reload() }, CERTIFICATE_RELOAD_DEBOUNCE_MS)
  }

  private async load (): Promise<void> {
    const { files, current } = this
    try {
      const read = async (path: string | undefined, old: Buffer): Promise<Buffer> => path === undefined ? old : await readFile(path)
      const next: TlsConfig = 'pfx' in current
        ? { ...current, pfx: await read(files.pfx, current.pfx) }
        : { ...current, key: await read(files.key, current.key), cert: await read(files.cert, current.cert) }
      // throws on a bad key, a bad certificate or a pair that does not match
      this.apply(next)
      this.current = next
      log('certificates reloaded')
    } catch (err) {
      logError('certificates not reloaded, the old ones kept: %s', errorMessage(err).split('\n')[0] ?? '')
    }
  }
}
