import type { Delivery } from '../brokers/broker.js'
import { describeError, HandlerTimeoutError, InvalidMessageError, isRetriable, ShutdownAbortError } from '../errors.js'
import { decodeMessage, type Event } from '../event.js'
import type { Context, HandlerDefinition, RetryPolicy, Target } from '../handlers/handler.js'
import { childLogger, type Logger } from '../logger.js'
import type { Messaging } from '../messaging.js'
import { redactText } from '../redact.js'
import { DLQ_HEADERS, deadLetterMessage, deadLetterTopic, truncatedDeadLetter } from './dead-letter.js'
import { failureReason } from './failure-reason.js'
import { KeyQueue, Semaphore } from './key-queue.js'
import { setMaxListeners } from 'node:events'
import { RetryWaits, retryDelayFor } from './retry.js'
import { Attempt, SUCCEEDED, untilReturnedOrForced, type Outcome } from './attempt.js'
import { Batcher } from './batcher.js'
import { attemptsBefore, storeRetry } from './durable-retry.js'
import { Backoff, sleep } from '../time.js'
import { schemaErrors } from '../handlers/schema.js'
import { observeConsume, traceLogFields, type AttemptScope, type ConsumeOutcome, type MessageScope } from '../observability/observe.js'

export type ContextFactory = () => object | Promise<object>

export interface ConsumerSettings {
  messaging: Messaging
  group: string
  topics: string[]
  logger: Logger
  context: ContextFactory | undefined
  /** A message body larger than this (bytes) is dead-lettered without being parsed. */
  maxMessageBytes: number
}

const DEFAULT_POLICY: Pick<RetryPolicy, 'deadLetter'> = { deadLetter: undefined }

/**
 * Runs one handler definition in one group: takes every message delivered for its topics
 * through decode → route → validate → attempts with retries → ack or dead letter.
 * A message is acknowledged only after its handler succeeded, it was skipped (no method
 * for its event) or it was dead-lettered; a shutdown releases what it caught waiting.
 */
export class HandlerConsumer {
  readonly definition: HandlerDefinition
  readonly settings: ConsumerSettings
  readonly #keys = new KeyQueue()
  readonly #slots: Semaphore
  readonly #stopping = new AbortController()
  readonly #forced = new AbortController()
  readonly #retryWaits = new RetryWaits()
  /** The handler calls running now: a forced stop aborts each. */
  readonly #running = new Set<Attempt>()
  /** Messages waiting for a retry and set aside from `maxInFlight` (at most `maxWaitingRetries`). */
  #waiting = 0
  readonly #log: Logger
  /** Lets the next message of a delivery's key start: called once its ack is on its way. */
  readonly #handOn = new WeakMap<Delivery, () => void>()
  /** What observes each message being handled (tracing, metrics). */
  readonly #observed = new WeakMap<Delivery, MessageScope>()
  /** A batch handler's gatherer (`batchHandler()`), else undefined. */
  readonly #batcher: Batcher | undefined
  constructor (definition: HandlerDefinition, settings: ConsumerSettings) {
    this.definition = definition
    this.settings = settings
    this.#slots = new Semaphore(definition.concurrency)
    // Every handler that timed out and ignores its signal listens for a forced stop: as many as `concurrency`, which may exceed Node's default of 10.
    setMaxListeners(0, this.#forced.signal)
    this.#log = childLogger(settings.logger, { group: settings.group, handler: definition.name })
    const batch = definition.targets[0]?.batch
    if (batch !== undefined) {
      const { messaging, group, context } = settings
      this.#batcher = new Batcher(batch, definition.targets[0]!.policy.timeout, { messaging, group, context, logger: this.#log, forced: this.#forced.signal })
    }
  }

  /** Every dead-letter destination this consumer may send to, so the broker keeps them from the start. */
  deadLetterTopics (): string[] {
    const out = new Set<string>()
    const policies = this.definition.targets.length > 0 ? this.definition.targets.map(t => t.policy) : [DEFAULT_POLICY]
    for (const topic of this.settings.topics) {
      out.add(deadLetterTopic(topic, this.settings.group, DEFAULT_POLICY) as string)
      for (const policy of policies) {
        const dest = deadLetterTopic(topic, this.settings.group, policy)
        if (dest !== false) out.add(dest)
      }
    }
    return [...out]
  }

  /** The most messages this handler may hold unsettled, running or queued (behind a key or a slot); waiting retries are not counted. */
  get maxInFlight (): number {
    return Math.max(2, this.definition.concurrency * 2)
  }

  /**
   * The most messages that wait for a retry without counting against `maxInFlight`:
   * 10 × concurrency, at least 10. Beyond that a waiting message keeps its place in
   * `maxInFlight`, so only when this many wait can retries slow the flow down.
   */
  get maxWaitingRetries (): number {
    return Math.max(10, this.definition.concurrency * 10)
  }

  /** Takes one delivery through to ack, dead letter or release. Resolves once it is settled; never rejects. */
  handle (delivery: Delivery): Promise<void> {
    const { messaging, group } = this.settings
    this.#observed.set(delivery, observeConsume({ broker: messaging.options.broker, group, delivery, tracing: messaging.options.tracing }))
    return this.#keys.run(delivery.key, next => {
      this.#handOn.set(delivery, next)
      return this.#process(delivery)
    }).then(() => this.#observed.get(delivery)?.end('released'), (err: unknown) => {
      this.#log.error({ err: redactText(describeError(err)), messageId: delivery.id }, 'unexpected error while handling a message; it will be delivered again')
      this.#observed.get(delivery)?.end('released')
    })
  }

  /** From now on nothing new starts: waiting retries and queued messages are released. */
  beginStop (): void {
    this.#stopping.abort()
    this.#retryWaits.cancelAll()
    this.#batcher?.drain()
  }

  /** The shutdown stops waiting: running handlers' `ctx.signal` aborts and their messages are released. */
  force (): void {
    this.#forced.abort()
    const reason = new ShutdownAbortError()
    for (const attempt of this.#running) attempt.abort(reason)
    this.#batcher?.force(reason)
  }

  async #process (delivery: Delivery): Promise<void> {
    if (this.#stopping.signal.aborted) return await this.#release(delivery)
    let payload: unknown
    let event: Event | undefined
    const fallback = this.definition.targets.length === 1 ? this.definition.targets[0]!.policy : DEFAULT_POLICY
    const limit = this.settings.maxMessageBytes
    if (delivery.value.length > limit) {
      const tooLarge = new InvalidMessageError(`the message body is ${delivery.value.length} bytes, over maxMessageBytes (${limit} bytes), so it was not parsed; to handle bigger messages, raise maxMessageBytes on the handler or in startConsumers()`)
      return await this.#deadLetter(delivery, fallback, 0, describeError(tooLarge))
    }
    // A raw target found from the headers alone takes the body as it is: it is never decoded.
    let target = this.definition.routeUndecoded?.(delivery.headers)
    if (target === undefined) {
      let removedKeys: string[]
      try {
        ({ payload, event, removedKeys } = decodeMessage(delivery.value, delivery.headers))
      } catch (err) {
        return await this.#deadLetter(delivery, fallback, 0, describeError(err))
      }
      if (removedKeys.length > 0) {
        this.#log.warn({ topic: delivery.topic, messageId: delivery.id, removedKeys }, 'removed keys that could pollute prototypes (__proto__, constructor.prototype) from the message body; the handler gets it without them')
      }
      target = this.definition.route(event)
      if (target === undefined) {
        this.#log.debug({ topic: delivery.topic, event: event?.name, messageId: delivery.id }, 'no handler for this event; acknowledged and skipped')
        return await this.#ack(delivery, 'skipped')
      }
    }
    if (target.raw) event = undefined
    if (target.schema !== undefined) {
      const invalid = schemaErrors(target.schema, payload)
      if (invalid !== undefined) return await this.#deadLetter(delivery, target.policy, 0, invalid)
    }
    const policy = target.policy
    // A retry the broker kept counts on from the attempts it had (durable-retry.ts).
    const before = attemptsBefore(delivery.headers)
    if (delivery.redeliveriesCounted !== false && delivery.redeliveries > 0 && before + delivery.redeliveries > policy.maxRetries) {
      // Every earlier delivery ended without a verdict: the worker died (exit, OOM, native
      // crash) or lost its connection while handling it. Running it again would only repeat that.
      const crashed = `the message was delivered ${delivery.redeliveries} times without being settled (the worker crashed, was killed or lost its connection while handling it each time); it was not handed to the handler again`
      return await this.#deadLetter(delivery, policy, before + delivery.redeliveries, crashed)
    }
    for (let attempt = before + delivery.redeliveries + 1; ; attempt++) {
      if (this.#stopping.signal.aborted) return await this.#release(delivery)
      let outcome: Outcome
      let observed: AttemptScope
      if (target.batch !== undefined) {
        observed = this.#observed.get(delivery)!.attempt(attempt)
        // In a batch, the next message of its key may join this batch (after it) or a later one: batches run one at a time.
        this.#handOn.get(delivery)?.()
        delivery.handOn?.()
        outcome = await this.#batcher!.submit(delivery, payload, event, attempt)
      } else {
        if (!this.#slots.tryAcquire()) await this.#slots.acquire()
        try {
          if (this.#stopping.signal.aborted) return await this.#release(delivery)
          observed = this.#observed.get(delivery)!.attempt(attempt)
          outcome = await observed.run(() => this.#attempt(target, delivery, payload, event, attempt))
        } finally {
          this.#slots.release()
        }
      }
      const verdict: ConsumeOutcome = outcome.ok ? 'ack' : outcome.shutdown ? 'released' : !isRetriable(outcome.error) || attempt > policy.maxRetries ? 'dead_letter' : 'retry'
      observed.end(verdict, outcome.ok ? undefined : outcome.error)
      if (outcome.ok) return await this.#ack(delivery)
      if (outcome.shutdown) return await this.#release(delivery)
      const reason = redactText(failureReason(outcome.error))
      if (verdict === 'dead_letter') return await this.#deadLetter(delivery, policy, attempt, reason)
      const delay = retryDelayFor(policy, attempt)
      const fields = { topic: delivery.topic, messageId: delivery.id, attempt, reason }
      const broker = await this.settings.messaging.broker()
      if (await storeRetry(broker, this.settings.group, delivery, { attempt, reason, delay, after: policy.durableRetryAfter }, err => this.#log.warn({ ...fields, err: redactText(describeError(err)) }, 'could not store the retry in the broker; it waits in this process instead'))) {
        await this.#ack(delivery, 'retry')
        return this.#log.warn(fields, `handler failed (attempt ${attempt} of ${policy.maxRetries + 1}); retry stored in the broker, due in ${delay} ms`)
      }
      this.#log.warn(fields, `handler failed (attempt ${attempt} of ${policy.maxRetries + 1}); retrying in ${delay} ms`)
      const passed = await this.#waitForRetry(delivery, delay)
      if (!passed) return await this.#release(delivery)
    }
  }

  /** Waits for a retry, set aside from `maxInFlight` (while fewer than `maxWaitingRetries` are), so healthy messages keep flowing. */
  async #waitForRetry (delivery: Delivery, delay: number): Promise<boolean> {
    const setAside = delivery.waiting !== undefined && this.#waiting < this.maxWaitingRetries
    if (setAside) {
      this.#waiting++
      delivery.waiting!(true)
    }
    try {
      return await this.#retryWaits.wait(delay, delivery.keepAlive?.bind(delivery))
    } finally {
      if (setAside) {
        this.#waiting--
        delivery.waiting!(false)
      }
    }
  }

  async #attempt (target: Target, delivery: Delivery, payload: unknown, event: Event | undefined, attempt: number): Promise<Outcome> {
    const timeout = target.policy.timeout
    const running = new Attempt(timeout)
    this.#running.add(running)
    try {
      const handler = this.#invoke(target, delivery, payload, event, attempt, running)
      try {
        await running.run(handler)
        return SUCCEEDED
      } catch (error) {
        if (error instanceof HandlerTimeoutError && error === running.reason) await this.#settledOrForced(handler, delivery, timeout!)
        return { ok: false, error, shutdown: this.#forced.signal.aborted }
      }
    } finally {
      running.end()
      this.#running.delete(running)
    }
  }

  /** Calls the handler. `ctx.logger` and `ctx.signal` are made on first use: most handlers use neither, and every message would pay for them. */
  async #invoke (target: Target, delivery: Delivery, payload: unknown, event: Event | undefined, attempt: number, running: Attempt): Promise<void> {
    const extra = this.settings.context === undefined ? undefined : await this.settings.context()
    const log = this.#log
    let logger: Logger | undefined
    const ctx: Context = {
      ...extra,
      topic: delivery.topic,
      key: delivery.key,
      headers: delivery.headers,
      attempt,
      event,
      messageId: delivery.id,
      get logger (): Logger {
        logger ??= childLogger(log, { topic: delivery.topic, messageId: delivery.id, attempt, ...traceLogFields() })
        return logger
      },
      get signal (): AbortSignal {
        return running.signal
      },
      messaging: this.settings.messaging
    }
    // A raw handler gets its own copy of the bytes: whatever it does to them, the next attempt and the dead letter have the message as it came.
    await target.invoke(target.raw ? Buffer.from(delivery.value) : payload, event, ctx)
  }

  /**
   * After a timeout the user's call may still run (it ignored `ctx.signal`): its slot and
   * its key stay held until it returns, so `concurrency` and per-key order stay true.
   * Only a forced shutdown stops waiting for it.
   */
  async #settledOrForced (run: Promise<unknown>, delivery: Delivery, timeout: number): Promise<void> {
    await untilReturnedOrForced(run, this.#forced.signal, () => {
      this.#log.warn({ topic: delivery.topic, messageId: delivery.id, timeout }, 'the handler timed out and has not returned yet (it ignores ctx.signal); its slot and its key stay held until it returns')
    })
  }

  async #deadLetter (delivery: Delivery, policy: Pick<RetryPolicy, 'deadLetter'>, attempts: number, unmasked: string): Promise<void> {
    const reason = redactText(unmasked)
    const destination = deadLetterTopic(delivery.topic, this.settings.group, policy)
    if (destination === false) {
      this.#log.error({ topic: delivery.topic, messageId: delivery.id, attempts, reason }, 'message dropped after its last attempt (deadLetter: false)')
      return await this.#ack(delivery, 'dead_letter')
    }
    let message = deadLetterMessage(delivery, destination, this.settings.group, attempts, reason)
    // The message is acknowledged only once its dead letter is stored; until then, keep
    // trying (a broker outage), unless a shutdown comes: then it is delivered again later.
    // A send that can never succeed (too large, refused) stores instead a pointer to the
    // original, which always fits; if even that is refused, an error log names the message.
    const backoff = new Backoff(500, 10_000)
    for (;;) {
      try {
        await this.#observed.get(delivery)!.deadLetter(destination, () => this.settings.messaging.producer.sendRaw(message))
        break
      } catch (err) {
        const fields = { topic: delivery.topic, messageId: delivery.id, deadLetter: destination, attempts, reason, err: redactText(describeError(err)) }
        if (!isRetriable(err)) {
          if (message.headers[DLQ_HEADERS.truncated] === undefined) {
            this.#log.error(fields, 'the dead letter cannot be stored as it is; storing a pointer to the original message instead')
            message = truncatedDeadLetter(delivery, destination, this.settings.group, attempts, reason)
            continue
          }
          this.#log.error(fields, 'the dead letter cannot be stored at all; the message is acknowledged and skipped, and this line is its only record')
          return await this.#ack(delivery, 'dead_letter')
        }
        this.#log.warn(fields, 'could not store the dead letter yet; trying again')
        if (!await sleep(backoff.next(), this.#stopping.signal)) return await this.#release(delivery)
      }
    }
    this.#log.warn({ topic: delivery.topic, messageId: delivery.id, deadLetter: destination, attempts, reason }, 'message dead-lettered')
    await this.#ack(delivery, 'dead_letter')
  }

  async #ack (delivery: Delivery, outcome: ConsumeOutcome = 'ack'): Promise<void> {
    this.#observed.get(delivery)?.end(outcome)
    try {
      // Its verdict is taken: the next message of its key may run while the broker confirms the ack.
      const acking = delivery.ack()
      this.#handOn.get(delivery)?.()
      await acking
    } catch (err) {
      this.#log.warn({ messageId: delivery.id, err: redactText(describeError(err)) }, 'could not acknowledge the message; the broker will deliver it again')
    }
  }

  async #release (delivery: Delivery): Promise<void> {
    this.#observed.get(delivery)?.end('released')
    try {
      await delivery.release()
    } catch (err) {
      this.#log.warn({ messageId: delivery.id, err: redactText(describeError(err)) }, 'could not release the message; the broker will deliver it again')
    }
  }
}
