/** Everything a test (or a describe block) started, stopped in reverse order whatever happened. */
export class Cleanup {
  private readonly steps: Array<() => Promise<void>> = []

  add (step: () => Promise<void>): void { this.steps.push(step) }

  async run (): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try { await step() } catch {}
    }
  }
}
