/**
 * Waiting, bounded: the timeouts and backoffs every part of Herald uses, written once.
 */

/**
 * Resolves or rejects as `promise` does, or rejects with `onTimeout()` after `ms`. The timer
 * never keeps the process alive and is cleared as soon as `promise` settles.
 *
 * @example
 * await withTimeout(client.ping(), 2000, () => new BrokerError('Redis did not answer PING within 2000 ms'))
 */
export async function withTimeout<T> (promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms)
    timer.unref()
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Waits for `promise` at most `ms`: resolves `true` once it settles (resolved or rejected),
 * `false` when `ms` passed first. Never rejects. The timer is cleared as soon as `promise`
 * settles and does not keep the process alive unless `keepAlive` is set.
 *
 * @example
 * if (!await settledWithin(connection.close(), 5000)) socket.destroy()
 */
export async function settledWithin (promise: Promise<unknown>, ms: number, { keepAlive = false }: { keepAlive?: boolean } = {}): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>(resolve => {
    timer = setTimeout(() => resolve(false), ms)
    if (!keepAlive) timer.unref()
  })
  try {
    return await Promise.race([promise.then(() => true, () => true), late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Resolves `true` after `ms`, or `false` at once when `signal` aborts (before or during the
 * wait). Never rejects; the timer does not keep the process alive.
 */
export async function sleep (ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted === true) return false
  return await new Promise<boolean>(resolve => {
    const done = (passed: boolean): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      resolve(passed)
    }
    const onAbort = (): void => done(false)
    const timer = setTimeout(() => done(true), ms)
    timer.unref()
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Delays that double from `initialMs` up to `maxMs`, for reconnect and retry loops. */
export class Backoff {
  readonly #initialMs: number
  readonly #maxMs: number
  #next: number

  constructor (initialMs: number, maxMs: number) {
    this.#initialMs = initialMs
    this.#maxMs = maxMs
    this.#next = initialMs
  }

  /** The delay to wait now; the following one is twice as long, up to the cap. */
  next (): number {
    const delay = this.#next
    this.#next = Math.min(this.#next * 2, this.#maxMs)
    return delay
  }

  /** After a success: the next failure waits the initial delay again. */
  reset (): void {
    this.#next = this.#initialMs
  }
}

/** Seconds since `start`, a `process.hrtime.bigint()` reading. */
export const secondsSince = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9
