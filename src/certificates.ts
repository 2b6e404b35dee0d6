/**
 * The TLS key and certificate, read again from their files on SIGHUP and when
 * a file changes, and handed to the HTTPS server with `setSecureContext()`:
 * new TLS connections get the new certificate, open ones carry on. A file
 * that cannot be read or that TLS rejects is logged and the old context kept.
 * Material given inline to `start()` has no file and stays as it is.
 */
import { readFile } from 'node:fs/promises'
import debug from 'debug'
import { CERTIFICATE_RELOAD_DEBOUNCE_MS } from './constants.js'
import { FileWatch } from './file-watch.js'
import { errorMessage, logError } from './log.js'
import type { TlsConfig, TlsFiles } from './options.js'

const log = debug('rendezvous:server')

export class Certificates {
  private current: TlsConfig
  private readonly watch: FileWatch
  /** Reloads run one at a time, in order. */
  private reloading: Promise<void> = Promise.resolve()

  constructor (tls: TlsConfig, private readonly files: TlsFiles, private readonly apply: (tls: TlsConfig) => void) {
    this.current = tls
    const paths = Object.values(files).filter((path): path is string => path !== undefined)
    this.watch = new FileWatch(paths, CERTIFICATE_RELOAD_DEBOUNCE_MS, () => { void this.reload() }, 'certificates')
  }

  /** Watches the files: a renewal that replaces a file (rename) is seen too. */
  start (): void {
    this.watch.start()
  }

  stop (): void {
    this.watch.stop()
  }

  /** Reads the files again and applies them; never rejects. */
  async reload (): Promise<void> {
    this.reloading = this.reloading.then(async () => { await this.load() })
    await this.reloading
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
