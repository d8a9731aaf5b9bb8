import type { Broker, OutgoingMessage } from './brokers/broker.js'
import { BrokerError, PublishError } from './errors.js'
import { createEvent, encodeJson, eventHeaders, HEADER_CONTENT_TYPE, JSON_CONTENT_TYPE, type Event } from './event.js'

export interface SendOptions {
  /** The message key: messages with the same key keep their order (Kafka partition). */
  key?: string
  /** Extra headers, string values. */
  headers?: Record<string, string>
}

export interface PublishOptions extends SendOptions {
  /** Where the event goes; default the messaging's `defaultTopic`. */
  topic?: string
}

export interface ProducerSettings {
  source: string
  defaultTopic: string
  /** How long a send may wait for the broker's acknowledgement, in ms. */
  publishTimeout: number
  /** How long to wait for more sends before sending a batch, in ms (0: the batch is what arrived in the same tick). */
  linger: number
  /** The most messages in one batch. */
  maxBatchSize: number
}

interface Pending {
  message: OutgoingMessage
  eventName: string | undefined
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * Sends messages and events. Every send resolves only once the broker acknowledged it,
 * and rejects with a `PublishError` otherwise. Sends made while a batch is on its way are
 * coalesced into the next batch (one request for many HTTP handlers), and batches go one
 * at a time, so sends keep their order.
 */
export class Producer {
  readonly #broker: () => Promise<Broker>
  readonly #settings: ProducerSettings
  #queue: Pending[] = []
  #sending: Promise<void> | undefined
  /** Cancels the scheduled drain, when one is scheduled. */
  #scheduled: (() => void) | undefined
  #closed = false

  constructor (broker: () => Promise<Broker>, settings: ProducerSettings) {
    this.#broker = broker
    this.#settings = settings
  }

  /**
   * Sends `message` as JSON, unwrapped, to `topic`. Resolves once the broker has it.
   *
   * @example
   * await getProducer().send('audit', { action: 'login', user: 7 }, { key: '7' })
   */
  async send (topic: string, message: unknown, options: SendOptions = {}): Promise<void> {
    const value = encodeJson(message)
    await this.sendRaw({ topic, value, key: options.key, headers: { [HEADER_CONTENT_TYPE]: JSON_CONTENT_TYPE, ...options.headers } })
  }

  /**
   * Publishes an event envelope `{id, name, data, timestamp, source}` and resolves with
   * it once the broker acknowledged it.
   *
   * @example
   * const event = await messaging.producer.publishEvent('user.created', { id: 1 }, { topic: 'user-events', key: '1' })
   */
  async publishEvent<T> (name: string, data: T, options: PublishOptions = {}): Promise<Event<T>> {
    if (typeof name !== 'string' || name === '') throw new TypeError('publishEvent: the event name must be a non-empty string')
    const event = createEvent(name, data, this.#settings.source)
    const topic = options.topic ?? this.#settings.defaultTopic
    await this.sendRaw({ topic, value: encodeJson(event), key: options.key, headers: { ...options.headers, ...eventHeaders(event) } }, name)
    return event
  }

  /** Sends a message exactly as given (body bytes and headers). Used for dead letters. */
  sendRaw (message: OutgoingMessage, eventName?: string): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError(message.topic, eventName, new BrokerError('the producer is closed', { retriable: false })))
    if (typeof message.topic !== 'string' || message.topic === '') {
      return Promise.reject(new TypeError('the topic must be a non-empty string'))
    }
    return new Promise<void>((resolve, reject) => {
      let done = false
      const timer = setTimeout(() => {
        if (done) return
        done = true
        reject(new PublishError(message.topic, eventName, new BrokerError(`the broker did not acknowledge within publishTimeout (${this.#settings.publishTimeout} ms)`, { code: 'HERALD_PUBLISH_TIMEOUT' })))
      }, this.#settings.publishTimeout)
      timer.unref()
      this.#queue.push({
        message,
        eventName,
        resolve: () => { if (!done) { done = true; clearTimeout(timer); resolve() } },
        reject: (err) => { if (!done) { done = true; clearTimeout(timer); reject(err) } }
      })
      this.#schedule()
    })
  }

  #schedule (): void {
    if (this.#sending !== undefined || this.#scheduled !== undefined) return
    const run = (): void => { this.#scheduled = undefined; this.#drain() }
    if (this.#settings.linger > 0 && this.#queue.length < this.#settings.maxBatchSize) {
      const timer = setTimeout(run, this.#settings.linger)
      this.#scheduled = () => clearTimeout(timer)
    } else {
      // Wait for the sends of the current tick to queue up, then send them together.
      const immediate = setImmediate(run)
      this.#scheduled = () => clearImmediate(immediate)
    }
  }

  #drain (): void {
    if (this.#sending !== undefined || this.#queue.length === 0) return
    const batch = this.#queue.splice(0, this.#settings.maxBatchSize)
    this.#sending = this.#sendBatch(batch).finally(() => {
      this.#sending = undefined
      if (this.#queue.length > 0) this.#drain()
    })
  }

  async #sendBatch (batch: Pending[]): Promise<void> {
    let results: Array<Error | undefined>
    try {
      const broker = await this.#broker()
      results = await broker.publish(batch.map(p => p.message))
    } catch (err) {
      results = batch.map(() => err as Error)
    }
    batch.forEach((p, i) => {
      const err = results[i]
      if (err === undefined && i < results.length) p.resolve()
      else p.reject(new PublishError(p.message.topic, p.eventName, err ?? new BrokerError('the broker gave no answer for this message')))
    })
  }

  /** Resolves once every send made so far has been answered (acknowledged or failed). */
  async flush (): Promise<void> {
    while (this.#queue.length > 0 || this.#sending !== undefined || this.#scheduled !== undefined) {
      if (this.#scheduled !== undefined && this.#sending === undefined) {
        this.#scheduled()
        this.#scheduled = undefined
        this.#drain()
      }
      await (this.#sending ?? new Promise(resolve => setImmediate(resolve)))
    }
  }

  /** Flushes, then refuses further sends. */
  async close (): Promise<void> {
    await this.flush()
    this.#closed = true
  }
}
