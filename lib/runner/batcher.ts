import type { Delivery } from '../brokers/broker.js'
import { HandlerError, HandlerTimeoutError, ShutdownAbortError } from '../errors.js'
import type { Event } from '../event.js'
import type { BatchContext, BatchItem, BatchTarget } from '../handlers/handler.js'
import { childLogger, type Logger } from '../logger.js'
import type { Messaging } from '../messaging.js'
import { Attempt, SUCCEEDED, untilReturnedOrForced, type Outcome } from './attempt.js'

export interface BatcherSettings {
  group: string
  messaging: Messaging
  context: (() => object | Promise<object>) | undefined
  logger: Logger
  /** Aborted when a shutdown stops waiting for running handlers. */
  forced: AbortSignal
}

interface Entry {
  item: BatchItem
  resolve: (outcome: Outcome) => void
}

/**
 * Gathers a batch handler's messages and runs its function on them, one batch at a time:
 * a batch runs once it holds `maxBatchSize` messages or its first message has waited
 * `maxWaitMs` (at once when draining for a shutdown). Each message learns its own outcome.
 */
export class Batcher {
  readonly #target: BatchTarget
  readonly #timeout: number | undefined
  readonly #settings: BatcherSettings
  #open: Entry[] = []
  #timer: NodeJS.Timeout | undefined
  #due = false
  #draining = false
  #busy = false
  #running: Attempt | undefined

  constructor (target: BatchTarget, timeout: number | undefined, settings: BatcherSettings) {
    this.#target = target
    this.#timeout = timeout
    this.#settings = settings
  }

  /** Adds one attempt of a message to the next batch; resolves with its outcome once that batch ran. */
  submit (delivery: Delivery, message: unknown, event: Event | undefined, attempt: number): Promise<Outcome> {
    const item: BatchItem = { message, event, topic: delivery.topic, key: delivery.key, headers: delivery.headers, attempt, messageId: delivery.id }
    return new Promise(resolve => {
      this.#open.push({ item, resolve })
      if (this.#timer === undefined && !this.#due) this.#startWaiting()
      this.#next()
    })
  }

  /** A shutdown began: what was gathered runs now, without waiting for `maxWaitMs`. */
  drain (): void {
    this.#draining = true
    this.#next()
  }

  /** A shutdown stops waiting: the running batch's `ctx.signal` aborts and its messages are released. */
  force (reason: Error): void {
    this.#running?.abort(reason)
    this.#next()
  }

  /** The batch being gathered is due `maxWaitMs` from now, full or not. */
  #startWaiting (): void {
    this.#timer = setTimeout(() => { this.#timer = undefined; this.#due = true; this.#next() }, this.#target.maxWaitMs)
  }

  #next (): void {
    if (this.#settings.forced.aborted) {
      // Nothing more runs: what was gathered is given back.
      clearTimeout(this.#timer)
      for (const entry of this.#open.splice(0)) entry.resolve({ ok: false, error: new ShutdownAbortError(), shutdown: true })
      return
    }
    if (this.#busy || this.#open.length === 0) return
    if (!this.#due && !this.#draining && this.#open.length < this.#target.maxBatchSize) return
    const batch = this.#open.splice(0, this.#target.maxBatchSize)
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#due = this.#open.length >= this.#target.maxBatchSize
    // What stays behind waits for its own maxWaitMs, counted from now.
    if (this.#open.length > 0 && !this.#due) this.#startWaiting()
    this.#busy = true
    void this.#run(batch).finally(() => {
      this.#busy = false
      this.#next()
    })
  }

  async #run (batch: Entry[]): Promise<void> {
    const running = new Attempt(this.#timeout)
    this.#running = running
    const failed = new Map<number, unknown>()
    let returned = false
    const items = batch.map(e => e.item)
    const { group, messaging, context, logger, forced } = this.#settings
    const handler = (async () => {
      const extra = context === undefined ? undefined : await context()
      let log: Logger | undefined
      const ctx: BatchContext = {
        ...extra,
        fail (which: number | BatchItem, error: unknown): void {
          const index = typeof which === 'number' ? which : items.indexOf(which)
          if (!Number.isInteger(index) || index < 0 || index >= items.length) {
            throw new HandlerError(`ctx.fail(item, error): item must be an index from 0 to ${items.length - 1} or one of this batch's items, got ${String(which)}`)
          }
          if (returned) throw new HandlerError('ctx.fail(item, error) was called after the batch handler returned; mark failures before it returns (await your work)')
          failed.set(index, error ?? new HandlerError('the batch handler marked this item as failed without an error (ctx.fail(i) with no error)'))
        },
        get logger (): Logger {
          log ??= childLogger(logger, { group, batchSize: items.length })
          return log
        },
        get signal (): AbortSignal {
          return running.signal
        },
        messaging
      }
      await this.#target.invoke(items, ctx)
    })()
    let thrown: { error: unknown } | undefined
    try {
      await running.run(handler)
    } catch (error) {
      thrown = { error }
    } finally {
      returned = true
      running.end()
      this.#running = undefined
    }
    const shutdown = thrown !== undefined && forced.aborted
    batch.forEach((entry, i) => {
      if (shutdown) entry.resolve({ ok: false, error: thrown!.error, shutdown: true })
      else if (failed.has(i)) entry.resolve({ ok: false, error: failed.get(i), shutdown: false })
      else entry.resolve(thrown === undefined ? SUCCEEDED : { ok: false, error: thrown.error, shutdown: false })
    })
    // A batch that timed out but still runs (it ignores ctx.signal) holds the turn until it returns, so batches never overlap.
    if (thrown?.error instanceof HandlerTimeoutError && thrown.error === running.reason) {
      await untilReturnedOrForced(handler, forced, () => {
        logger.warn({ group, timeout: this.#timeout, batchSize: items.length }, 'the batch handler timed out and has not returned yet (it ignores ctx.signal); the next batch waits until it returns')
      })
    }
  }
}
