import type { Broker, BrokerHealth } from './brokers/broker.js'
import { BrokerError, ErrorCode, HeraldError, isRetriable } from './errors.js'
import type { Event, EventData } from './event.js'
import { childLogger, createDefaultLogger, type Logger } from './logger.js'
import { memoryMisfit, resolveMessagingOptions, type Connector, type MessagingOptions, type ResolvedMessagingOptions } from './messaging-options.js'
import { Outbox, type OutboxStats } from './outbox/outbox.js'
import { DeadLetters, type DeadLetterTarget } from './dead-letters/dead-letters.js'
import { Producer, type PublishOptions } from './producer.js'
import { liveMessaging } from './observability/registry.js'
import { redactText } from './redact.js'
import { withTimeout } from './time.js'

export { DEFAULT_CONNECT_TIMEOUT_MS, MESSAGING_OPTION_KEYS, resolveMessagingOptions } from './messaging-options.js'
export type { MessagingOptions, ResolvedMessagingOptions } from './messaging-options.js'

/** `health()`: the broker's health, and the outbox's state when there is one (also summed up in `detail`). */
export interface MessagingHealth extends BrokerHealth {
  outbox?: OutboxStats
}

/** The most `health()` waits for an answer, in ms. */
const HEALTH_TIMEOUT_MS = 5_000

/** Set once the embedded-broker warning was logged: once per process is enough to be seen. */
let warnedMemory = false

/** @internal Lets the embedded-broker warning be logged again (tests). */
export function resetMemoryWarning (): void {
  warnedMemory = false
}

/** Something that must stop before the broker closes (a consumer runner). */
export interface Closeable {
  stop(): Promise<void>
}

/**
 * One connection to one broker: a producer, the consumers started on it, health and
 * close. Create it with `createMessaging` (independent) or `configureMessaging` (the
 * process default). It connects on first use; call `connect()` to fail fast at start-up.
 * With an `outbox`, creating it takes the outbox directory (a `ConfigError` if it cannot
 * be used or another process has it) and starts relaying what a previous run left there.
 */
export class Messaging {
  readonly options: ResolvedMessagingOptions
  readonly logger: Logger
  readonly producer: Producer
  readonly #connect: Connector
  readonly #outbox: Outbox | undefined
  #broker: Promise<Broker> | undefined
  /** The adapter being connected or connected: `close()` closes it even mid-connect. */
  #adapter: Broker | undefined
  readonly #closeables = new Set<Closeable>()
  #closing: Promise<void> | undefined
  /** Set once the producer is flushed and the broker is going: no more broker calls. */
  #closed = false

  constructor (options: MessagingOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    const { resolved, connect } = resolveMessagingOptions(options, env)
    this.options = resolved
    this.#connect = connect
    const base = options.logger === false ? silentLogger : options.logger ?? createDefaultLogger()
    this.logger = childLogger(base, { component: 'herald', broker: resolved.broker })
    const misfit = resolved.broker === 'memory' && options.logger !== false ? memoryMisfit(env) : undefined
    if (misfit !== undefined && !warnedMemory) {
      warnedMemory = true
      this.logger.warn({ broker: 'memory' }, `Herald runs on the embedded in-process broker (nothing leaves this process, nothing survives a restart), but ${misfit}: set broker (or MESSAGING_BROKER) to the broker you mean`)
    }
    this.#outbox = resolved.outbox === undefined
      ? undefined
      : Outbox.open(resolved.outbox, {
        logger: childLogger(this.logger, { component: 'herald.outbox' }),
        publish: async (messages) => await (await this.broker()).publish(messages),
        publishTimeout: resolved.publishTimeout,
        maxBatchSize: resolved.maxBatchSize
      })
    this.producer = new Producer(() => this.broker(), resolved, this.#outbox)
    liveMessaging.add(this)
  }

  /** The outbox's state (`pending`, `bytes`, …), or `undefined` without an `outbox` option. */
  get outbox (): OutboxStats | undefined {
    return this.#outbox?.stats()
  }

  /** The connected broker adapter. Loads the adapter and connects on first call. */
  broker (): Promise<Broker> {
    if (this.#closed) return Promise.reject(new BrokerError('this Messaging instance is closed; create a new one with createMessaging()', { code: ErrorCode.BrokerClosed, retriable: false }))
    this.#broker ??= (async () => {
      const broker = await this.#connect({ logger: this.logger, clientId: this.options.source })
      this.#adapter = broker
      const { connectTimeout } = this.options
      try {
        await withTimeout(broker.connect(), connectTimeout, () => new BrokerError(
          `${this.options.broker} at ${this.options.address} did not answer within ${connectTimeout} ms (connectTimeout): check the address and port (something there accepts connections but does not speak ${this.options.broker}), or raise connectTimeout`,
          { code: ErrorCode.ConnectTimeout }
        ))
      } catch (err) {
        // Closing the half-open client leaves no socket or timer that keeps the process up.
        await broker.close().catch(() => {})
        if (this.#adapter === broker) this.#adapter = undefined
        throw err instanceof HeraldError ? err : new BrokerError(`could not connect to ${this.options.broker} at ${this.options.address}: ${redactText((err as Error).message ?? String(err))}`, { cause: err })
      }
      return broker
    })()
    // A failed connection is not cached: the next call tries again.
    this.#broker.catch(() => { this.#broker = undefined })
    return this.#broker
  }

  /**
   * Connects now; rejects with a `BrokerError` that says which broker at which address
   * could not be reached. With an outbox, a broker that is unreachable (a retriable
   * failure, or no answer within `publishTimeout`) is logged instead, and sends go to the
   * outbox until it answers: a service can start during an outage. A failure that will
   * not pass by itself (a refused credential) still rejects.
   */
  async connect (): Promise<void> {
    if (this.#outbox === undefined) {
      await this.broker()
      return
    }
    const late = new BrokerError(`no answer within publishTimeout (${this.options.publishTimeout} ms)`, { code: ErrorCode.ConnectTimeout })
    try {
      await withTimeout(this.broker(), this.options.publishTimeout, () => late)
    } catch (err) {
      if (err === late) {
        this.logger.warn({ address: this.options.address, publishTimeout: this.options.publishTimeout }, 'the broker did not answer at start-up; sends go to the outbox until it does')
        return
      }
      if (!isRetriable(err)) throw err
      this.logger.warn({ address: this.options.address, err: redactText(err instanceof Error ? err.message : String(err)) }, 'the broker is unreachable at start-up; sends go to the outbox until it answers')
    }
  }

  /**
   * Publishes an event and resolves with it once the broker acknowledged it.
   *
   * @example
   * await messaging.publishEvent('order.paid', { orderId: 42 }, { topic: 'payments', key: '42' })
   */
  publishEvent<T> (name: string, data: T, options?: PublishOptions): Promise<Event<EventData<T>>> {
    return this.producer.publishEvent(name, data, options)
  }

  /**
   * Whether the broker answers, and the outbox's state when there is one. Never throws, and
   * resolves within `connectTimeout` (5 s at most): no answer by then is `ok: false`.
   */
  async health (): Promise<MessagingHealth> {
    let health: BrokerHealth
    const bound = Math.min(this.options.connectTimeout, HEALTH_TIMEOUT_MS)
    try {
      health = await withTimeout(this.broker().then(async broker => await broker.health()), bound,
        () => new BrokerError(`${this.options.broker} at ${this.options.address} did not answer within ${bound} ms`, { code: ErrorCode.ConnectTimeout }))
    } catch (err) {
      health = { ok: false, broker: this.options.broker, detail: redactText(err instanceof Error ? err.message : String(err)) }
    }
    const outbox = this.#outbox?.stats()
    if (outbox === undefined) return health
    const held = outbox.pending === 0 ? 'empty' : `${outbox.pending} messages (${outbox.bytes} of ${outbox.maxBytes} bytes) waiting, ${outbox.state}`
    const refused = outbox.undeliverable === 0 ? '' : `, ${outbox.undeliverable} undeliverable set aside`
    return { ...health, detail: `${health.detail}; outbox ${outbox.dir}: ${held}${refused}`, outbox }
  }

  /**
   * The dead letters of `group` on `topic` (`<topic>.<group>.dlq`): `list()`, `purge()`,
   * `replay()` to that group only. See the README, "Dead letters".
   *
   * @example
   * await messaging.deadLetters({ topic: 'orders', group: 'billing' }).replay({ filter: 'timeout' })
   */
  deadLetters (target: DeadLetterTarget): DeadLetters {
    return new DeadLetters(async () => await this.broker(), target)
  }

  /** @internal Consumers register here so that `close()` stops them before the broker goes. */
  track (closeable: Closeable): () => void {
    this.#closeables.add(closeable)
    return () => this.#closeables.delete(closeable)
  }

  /**
   * Stops the consumers started on this instance (draining in-flight handlers), sends
   * every pending publish, lets the outbox's relay drain it for up to `publishTimeout`
   * (what is left stays on disk for the next start), then closes the broker connections.
   * Idempotent.
   */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#closeables].map(c => c.stop()))
      await this.producer.close()
      await this.#outbox?.close(this.options.publishTimeout)
      this.#closed = true
      liveMessaging.delete(this)
      // A connection still being made is given up now rather than waited for.
      await this.#adapter?.close().catch(() => {})
      const broker = await this.#broker?.catch(() => undefined)
      await broker?.close()
    })()
    return this.#closing
  }
}

const noop = (): void => {}
const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/**
 * Creates an independent Messaging instance. Validates every option now.
 *
 * @example
 * const messaging = createMessaging({ broker: 'redis', url: 'redis://localhost:6379' })
 * await messaging.publishEvent('user.created', { id: 1 })
 */
export function createMessaging (options: MessagingOptions = {}): Messaging {
  return new Messaging(options)
}

let defaultMessaging: Messaging | undefined

/**
 * Creates a Messaging instance and makes it the process default, used by `getMessaging()`,
 * `getProducer()`, `publishEvent()`, the `@event` decorator and `startConsumers()`.
 *
 * @example
 * configureMessaging({ broker: 'kafka', bootstrapServers: 'localhost:9092' })
 */
export function configureMessaging (options: MessagingOptions = {}): Messaging {
  const messaging = createMessaging(options)
  defaultMessaging = messaging
  return messaging
}

/**
 * The process default Messaging instance. When `configureMessaging` was never called, one
 * is created from the environment (with nothing set: the embedded memory broker).
 */
export function getMessaging (): Messaging {
  defaultMessaging ??= createMessaging()
  return defaultMessaging
}

/** The default instance's producer. */
export function getProducer (): Producer {
  return getMessaging().producer
}

/**
 * Publishes an event through the default instance; resolves once the broker acknowledged it.
 *
 * @example
 * await publishEvent('user.created', { id: 1 }, { topic: 'user-events', key: '1' })
 */
export function publishEvent<T> (name: string, data: T, options?: PublishOptions): Promise<Event<EventData<T>>> {
  return getMessaging().publishEvent(name, data, options)
}

/** @internal Forgets the process default (tests). */
export function resetDefaultMessaging (): void {
  defaultMessaging = undefined
}
