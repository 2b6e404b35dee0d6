/** Progress lines on stderr, so that stdout keeps only the table. */
export function progress (line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}
