/**
 * Watching files the way renewals and config management replace them: each
 * file's directory is watched, not the file, so that a file replaced by a
 * rename is still seen, and a burst of events makes one call, `delayMs`
 * after the last. A directory that cannot be watched is logged; SIGHUP still
 * reloads. The owner stops it, which frees the watchers and the timer.
 */
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { errorMessage, logError } from './log.js'

export class FileWatch {
  private readonly watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined

  /** @param what what the files are, for the log (e.g. "certificates") */
  constructor (private readonly paths: readonly string[], private readonly delayMs: number, private readonly changed: () => void, private readonly what: string) {}

  start (): void {
    if (this.watchers.length > 0) return
    for (const dir of new Set(this.paths.map((path) => dirname(path)))) {
      const names = new Set(this.paths.filter((path) => dirname(path) === dir).map((path) => basename(path)))
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(name)) this.schedule()
        })
        watcher.on('error', (err) => { logError('%s: watching %s failed, reload with SIGHUP: %s', this.what, dir, errorMessage(err)) })
        this.watchers.push(watcher)
      } catch (err) {
        logError('%s: cannot watch %s, reload with SIGHUP: %s', this.what, dir, errorMessage(err))
      }
    }
  }

  stop (): void {
    clearTimeout(this.timer)
    for (const watcher of this.watchers.splice(0)) watcher.close()
  }

  private schedule (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(this.changed, this.delayMs)
  }
}
