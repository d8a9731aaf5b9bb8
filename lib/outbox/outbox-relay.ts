import type { OutgoingMessage } from '../brokers/broker.js'
import { BrokerError, ErrorCode, isRetriable } from '../errors.js'
import type { Logger } from '../logger.js'
import { redactText } from '../redact.js'
import { Backoff, settledWithin } from '../time.js'
import type { OutboxSpool, SpooledMessage } from './outbox-spool.js'

/** Backoff between attempts while the broker does not take the outbox's messages, in ms. */
const FIRST_RETRY_MS = 250
const MAX_RETRY_MS = 10_000

/**
 * Codes of the errors that say a message can never be delivered, however long one waits
 * (unlike a refused credential, which someone will fix): such a message is set aside in
 * `undeliverable.log` rather than holding up everything behind it.
 */
const UNDELIVERABLE_CODES = new Set<string>([ErrorCode.Unroutable, ErrorCode.MessageTooLarge, ErrorCode.InvalidTopic, ErrorCode.UnknownTopic, ErrorCode.InvalidHeader, ErrorCode.NotAStream])

export interface RelayDeps {
  spool: OutboxSpool
  /** Sends a batch to the broker (connecting if need be), with the `Broker.publish` contract. */
  publish: (messages: OutgoingMessage[]) => Promise<Array<Error | undefined>>
  publishTimeout: number
  maxBatchSize: number
  logger: Logger
}

const TIMEOUT = Symbol('timeout')
const STOPPED = Symbol('stopped')

/** One batch on its way. Kept across a timeout, so that it is awaited again, never sent twice at once. */
interface Attempt {
  records: SpooledMessage[]
  /** The records of `records` actually sent: those the broker had not acknowledged yet. */
  sent: SpooledMessage[]
  /** One per record of `sent`. */
  results: Promise<Array<Error | undefined>>
}

/**
 * Sends what the spool holds to the broker, oldest first, in batches of `maxBatchSize`,
 * one batch at a time, and commits each batch once the broker acknowledged it: order is
 * the spool's order, and a crash between the acknowledgement and the commit means the
 * batch is sent again (at least once), never lost. When the broker takes some messages of
 * a batch and not others, the cursor moves past the first ones it took, and the ones it
 * took behind a refused one are remembered and not sent again with the next attempt (only
 * a crash before the cursor passes them sends them again).
 *
 * While the broker does not take them it tries again with backoff (250 ms doubling to
 * 10 s), a batch at a time: a batch that outlives `publishTimeout` is awaited again rather
 * than sent again. An outage is logged once when it starts and once when the spool is
 * drained, not per message or attempt.
 */
export class OutboxRelay {
  readonly #deps: RelayDeps
  #running: Promise<void> | undefined
  #stopped = false
  readonly #stopping: Promise<typeof STOPPED>
  #signalStop: () => void = () => {}
  /** Wakes the loop while it waits for new writes (`wakeOnWrite`) or sits in a backoff (`hurry`). */
  #wakeOnWrite: (() => void) | undefined
  #hurry: (() => void) | undefined
  #attempt: Attempt | undefined
  #outage: { since: number, severe: boolean, relayed: number } | undefined
  #drainWaiters: Array<() => void> = []
  /** Records the broker acknowledged (or that were set aside) behind one it did not take: the cursor cannot pass them yet. */
  readonly #done = new WeakSet<SpooledMessage>()
  /** The last reason the broker did not take a batch (secret-free), while it does not. */
  lastError: string | undefined

  constructor (deps: RelayDeps) {
    this.#deps = deps
    this.#stopping = new Promise(resolve => { this.#signalStop = () => resolve(STOPPED) })
  }

  /** True while the broker does not take the outbox's messages (since the last batch it took). */
  get retrying (): boolean {
    return this.lastError !== undefined
  }

  /** Starts relaying (or wakes the relay waiting for writes) when there is something to relay. */
  written (): void {
    if (this.#stopped) return
    if (this.#wakeOnWrite !== undefined) {
      this.#wakeOnWrite()
      return
    }
    if (this.#running !== undefined || this.#deps.spool.pending === 0) return
    this.#running = this.#loop().finally(() => {
      this.#running = undefined
      if (this.#deps.spool.pending > 0) this.written()
    })
  }

  /**
   * Notes that the broker did not take a send (the producer is spooling it): the start of
   * an outage, logged once.
   */
  outage (reason: unknown): void {
    this.#startOutage(reason)
  }

  /** Resolves true once the spool is drained, or false after `timeout` ms. Cuts a backoff short to try now. */
  async drained (timeout: number): Promise<boolean> {
    if (this.#deps.spool.idle) return true
    this.#hurry?.()
    const drained = new Promise<void>(resolve => this.#drainWaiters.push(resolve))
    // A referenced timer: close() keeps the process up while it drains.
    return await settledWithin(drained, timeout, { keepAlive: true })
  }

  /** Stops at once: a batch on its way is not waited for (it will be sent again on the next start). */
  async stop (): Promise<void> {
    this.#stopped = true
    this.#signalStop()
    await this.#running
  }

  async #loop (): Promise<void> {
    const { spool, publishTimeout, maxBatchSize } = this.#deps
    const backoff = new Backoff(FIRST_RETRY_MS, MAX_RETRY_MS)
    while (!this.#stopped) {
      let attempt = this.#attempt
      if (attempt === undefined) {
        const records = spool.peek(maxBatchSize)
        if (records.length === 0) {
          if (spool.finishDrain()) {
            this.#endOutage()
            return
          }
          // Writes are on their way: wait for them.
          await this.#wait(new Promise<void>(resolve => { this.#wakeOnWrite = resolve }))
          this.#wakeOnWrite = undefined
          continue
        }
        const sent = records.filter(r => !this.#done.has(r))
        attempt = this.#attempt = { records, sent, results: sent.length === 0 ? Promise.resolve([]) : this.#send(sent) }
      }
      const outcome = await this.#race(attempt.results, publishTimeout)
      if (outcome === STOPPED) return
      let failure: unknown
      if (outcome === TIMEOUT) {
        failure = new BrokerError(`the broker did not acknowledge within publishTimeout (${publishTimeout} ms)`, { code: ErrorCode.PublishTimeout })
      } else {
        this.#attempt = undefined
        failure = await this.#settle(attempt, outcome)
      }
      if (failure === undefined) {
        backoff.reset()
        this.lastError = undefined
        continue
      }
      this.#startOutage(failure)
      // A referenced timer, unlike sleep's: relaying what the outbox holds keeps the process up.
      const delay = backoff.next()
      await this.#wait(new Promise<void>(resolve => {
        const timer = setTimeout(resolve, delay)
        this.#hurry = () => { clearTimeout(timer); resolve() }
      }))
      this.#hurry = undefined
    }
  }

  /**
   * Commits what the broker took, in order, up to the first message it did not take, and
   * remembers what it took behind that one; sets aside the messages it refused for good.
   * Returns why it stopped short, if it did.
   */
  async #settle (attempt: Attempt, results: Array<Error | undefined>): Promise<unknown> {
    let done = 0
    let failure: unknown
    for (const record of attempt.records) {
      const k = attempt.sent.indexOf(record)
      const err = this.#done.has(record) || k < 0 ? undefined : k < results.length ? results[k] : new BrokerError('the broker gave no answer for this message')
      if (err !== undefined) {
        const code = (err as { code?: unknown }).code
        if (isRetriable(err) || typeof code !== 'string' || !UNDELIVERABLE_CODES.has(code)) {
          failure ??= err
          continue
        }
        try {
          await this.#deps.spool.setAside(record, redactText(err.message))
        } catch (writeErr) {
          failure ??= writeErr
          continue
        }
        const name = record.message.headers['event-name']
        this.#deps.logger.error({ topic: record.message.topic, event: name, code, err: redactText(err.message), file: `${this.#deps.spool.dir}/undeliverable.log` },
          'the broker refused a spooled message for good; it is kept in the outbox\'s undeliverable.log, and the messages behind it go on')
      }
      if (failure === undefined) done++
      else this.#done.add(record)
    }
    if (done > 0) {
      await this.#deps.spool.commit(done)
      if (this.#outage !== undefined) this.#outage.relayed += done
    }
    return failure
  }

  async #send (records: SpooledMessage[]): Promise<Array<Error | undefined>> {
    try {
      return await this.#deps.publish(records.map(r => r.message))
    } catch (err) {
      return records.map(() => err as Error)
    }
  }

  async #race<T> (promise: Promise<T>, ms: number): Promise<T | typeof TIMEOUT | typeof STOPPED> {
    const answered = Promise.race([promise, this.#stopping])
    // A referenced timer: the relay keeps the process up while a batch waits for its answer.
    if (!await settledWithin(answered, ms, { keepAlive: true })) return TIMEOUT
    return await answered
  }

  async #wait (promise: Promise<void>): Promise<void> {
    await Promise.race([promise, this.#stopping])
  }

  #startOutage (reason: unknown): void {
    const text = redactText(reason instanceof Error ? reason.message : String(reason))
    this.lastError = text
    const severe = !isRetriable(reason)
    const fields = { dir: this.#deps.spool.dir, err: text }
    if (this.#outage === undefined) {
      this.#outage = { since: Date.now(), severe, relayed: 0 }
      if (severe) this.#deps.logger.error(fields, 'the broker refuses to take messages (this will not pass by itself: check the credentials and permissions); sends are kept in the outbox meanwhile')
      else this.#deps.logger.warn(fields, 'the broker does not take messages; sends are kept in the outbox and relayed, with backoff, once it answers')
    } else if (severe && !this.#outage.severe) {
      this.#outage.severe = true
      this.#deps.logger.error(fields, 'the broker refuses to take the outbox\'s messages (this will not pass by itself: check the credentials and permissions)')
    }
  }

  #endOutage (): void {
    const outage = this.#outage
    this.#outage = undefined
    this.lastError = undefined
    if (outage !== undefined) {
      this.#deps.logger.info({ dir: this.#deps.spool.dir, relayed: outage.relayed, outageMs: Date.now() - outage.since }, 'the broker takes messages again; the outbox is drained')
    }
    for (const resolve of this.#drainWaiters.splice(0)) resolve()
  }
}
