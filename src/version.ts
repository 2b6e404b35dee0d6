import { createRequire } from 'node:module'

// dist/src/version.js → the package's own package.json
const pkg = createRequire(import.meta.url)('../../package.json') as { version: string }

export const VERSION = pkg.version
