/**
 * Counts messages handed over and not yet settled, and lets `close()` wait until there are
 * none: the bookkeeping every subscription needs, written once.
 */
export class InFlight {
  #count = 0
  #idle: Array<() => void> = []

  get count (): number {
    return this.#count
  }

  /**
   * One more message handed over. Returns its `settle`, which counts it out once however
   * often it is called (an ack racing a release, a retry of a settle).
   */
  add (): () => void {
    this.#count++
    let settled = false
    return () => {
      if (settled) return
      settled = true
      this.#count--
      if (this.#count === 0) this.#release()
    }
  }

  /** Resolves once nothing is in flight (at once if nothing is). */
  async idle (): Promise<void> {
    if (this.#count === 0) return
    await new Promise<void>(resolve => this.#idle.push(resolve))
  }

  /** Stops waiting: whoever awaits `idle()` goes on now (closing without waiting). */
  abandon (): void {
    this.#release()
  }

  #release (): void {
    for (const resolve of this.#idle.splice(0)) resolve()
  }
}
