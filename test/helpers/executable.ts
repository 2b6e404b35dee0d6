/** Finding a program the tests drive (Chromium, redis-server) on this machine. */
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** Whether `path` is a file this process may execute. */
export function executable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The first executable of: the path in `override` if that variable is set
 * (set it to a missing path to simulate the program's absence), else
 * `/usr/bin/<name>`, then `<name>` on PATH.
 */
export function findExecutable (name: string, override: string): string | undefined {
  const given = process.env[override]
  const candidates = given !== undefined
    ? [given]
    : [`/usr/bin/${name}`, ...(process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, name))]
  return candidates.find(executable)
}
