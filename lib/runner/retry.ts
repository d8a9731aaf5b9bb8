import type { RetryPolicy } from '../handlers/handler.js'

/**
 * The delay before retry number `retry` (1 for the first retry): `retryDelay` for
 * `fixed`, `retryDelay × 2^(retry-1)` for `exponential`, never above `maxRetryDelay`.
 */
export function retryDelayFor (policy: RetryPolicy, retry: number): number {
  const delay = policy.backoff === 'fixed' ? policy.retryDelay : policy.retryDelay * 2 ** (retry - 1)
  return Math.min(delay, policy.maxRetryDelay)
}

/**
 * The retry delays of one consumer. One set of timers, ended all at once by `cancelAll()`
 * at shutdown, instead of one 'abort' listener per waiting message on a shared signal
 * (hundreds of waiting retries would trip Node's MaxListenersExceededWarning).
 */
export class RetryWaits {
  readonly #ends = new Set<(passed: boolean) => void>()
  #cancelled = false

  /** Waits `ms`, calling `keepAlive` every `keepAliveEvery` ms meanwhile (Kafka heartbeats); false when cancelled first. */
  async wait (ms: number, keepAlive?: () => Promise<void>, keepAliveEvery = 3000): Promise<boolean> {
    if (this.#cancelled) return false
    return await new Promise<boolean>((resolve) => {
      const end = (passed: boolean): void => {
        clearTimeout(timer)
        if (beat !== undefined) clearInterval(beat)
        this.#ends.delete(end)
        resolve(passed)
      }
      const timer = setTimeout(() => end(true), ms)
      const beat = keepAlive === undefined || ms <= keepAliveEvery
        ? undefined
        : setInterval(() => { keepAlive().catch(() => {}) }, keepAliveEvery)
      this.#ends.add(end)
    })
  }

  /** Ends every wait now (they resolve false), and any wait asked for later at once. */
  cancelAll (): void {
    this.#cancelled = true
    for (const end of [...this.#ends]) end(false)
  }
}
