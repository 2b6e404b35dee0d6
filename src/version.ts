import { createRequire } from 'node:module'

// dist/src/version.js → the package's own package.json
const pkg = createRequire(import.meta.url)('../../package.json') as { name: string, version: string }

export const NAME = pkg.name
export const VERSION = pkg.version
