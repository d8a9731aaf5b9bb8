import { HandlerTimeoutError } from '../errors.js'
import { settledWithin } from '../time.js'

/** How one attempt ended: succeeded, or failed (`shutdown`: a forced shutdown stopped waiting for it). */
export type Outcome = { ok: true } | { ok: false, error: unknown, shutdown: boolean }

export const SUCCEEDED: Outcome = { ok: true }

/**
 * One run of a handler: ends when the handler's promise does, or at once when it is
 * aborted (its timeout, a forced shutdown). The AbortController behind `ctx.signal` is
 * made only when the handler reads the signal: most handlers never do, and one controller
 * per message is a cost every message would pay.
 */
export class Attempt {
  #controller: AbortController | undefined
  #reason: Error | undefined
  #stop: ((reason: Error) => void) | undefined
  readonly #timer: NodeJS.Timeout | undefined

  constructor (timeout: number | undefined) {
    if (timeout !== undefined) this.#timer = setTimeout(() => this.abort(new HandlerTimeoutError(timeout)), timeout)
  }

  /** The handler's `ctx.signal`: already aborted when read after the abort. */
  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#reason !== undefined) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  /** Why it was aborted, or undefined. */
  get reason (): Error | undefined {
    return this.#reason
  }

  /** Aborts it (the first reason wins): `ctx.signal` aborts, and `run` stops waiting for the handler. */
  abort (reason: Error): void {
    if (this.#reason !== undefined) return
    this.#reason = reason
    this.#controller?.abort(reason)
    this.#stop?.(reason)
  }

  /** Settles as `handler` does, or rejects with the abort reason as soon as it is aborted. */
  run (handler: Promise<unknown>): Promise<void> {
    if (this.#reason !== undefined) {
      handler.catch(() => {})
      return Promise.reject(this.#reason)
    }
    return new Promise<void>((resolve, reject) => {
      this.#stop = reject
      handler.then(() => resolve(), reject)
    })
  }

  /** Stops its timer. */
  end (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#stop = undefined
  }
}

/**
 * After a timeout the user's call may still run (it ignores `ctx.signal`): resolves once it
 * returns, or once `forced` aborts (a shutdown stops waiting). `stillRunning` is called when
 * it had not returned at once (to say why its slot, key or turn stay held).
 */
export async function untilReturnedOrForced (run: Promise<unknown>, forced: AbortSignal, stillRunning: () => void): Promise<void> {
  const settled = run.then(() => {}, () => {})
  if (await settledWithin(settled, 0, { keepAlive: true }) || forced.aborted) return
  stillRunning()
  let onForced: () => void = () => {}
  const stop = new Promise<void>(resolve => { onForced = resolve })
  forced.addEventListener('abort', onForced, { once: true })
  try {
    await Promise.race([settled, stop])
  } finally {
    forced.removeEventListener('abort', onForced)
  }
}
