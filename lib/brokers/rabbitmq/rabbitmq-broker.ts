import { ConfigError } from '../../errors.js'
import { childLogger, type Logger } from '../../logger.js'
import { brokerClosedError } from '../shared/closed-error.js'
import type { Broker, BrokerDeps, BrokerHealth, DeadLetterCursor, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription, TopicLag } from '../broker.js'
import type { RabbitMqSettings } from './rabbitmq-config.js'
import { RabbitMqConnection } from './rabbitmq-connection.js'
import { rabbitMqLag } from './rabbitmq-lag.js'
import { rabbitMqDeadLetters, type SendToQueue } from './rabbitmq-dead-letters.js'
import { checkGroupName, checkTopicName } from './rabbitmq-names.js'
import { RabbitMqPublisher } from './rabbitmq-publisher.js'
import { RabbitMqRetries } from './rabbitmq-retries.js'
import { RabbitMqSubscription } from './rabbitmq-subscription.js'

/**
 * The RabbitMQ adapter (amqplib). A topic is a routing key on the durable topic exchange
 * `settings.exchange` (default `herald`); a group reads a topic through the durable queue
 * `<topic>.<group>` bound to it with the topic as binding key; a dead-letter topic is the
 * durable queue of that exact name, bound with its name. The key travels as the `key`
 * header, the other headers as the message's AMQP headers.
 *
 * Where RabbitMQ differs from Kafka and Redis:
 * - A group's queue exists from its first subscription on, and receives only what is
 *   published after that: a new group does not read earlier messages. Publishing to a
 *   topic no queue is bound to fails with an `HERALD_UNROUTABLE` error instead of being
 *   dropped silently.
 * - Order is the queue's order, so per-key order holds while a group has one consumer per
 *   queue; with several, RabbitMQ spreads the messages among them round-robin.
 * - A message handed over stays unacknowledged until it is settled, retry delays included:
 *   RabbitMQ closes a channel whose delivery stays unacknowledged longer than its
 *   `consumer_timeout` (30 minutes by default), which requeues its messages; the
 *   subscription then consumes again, and the held messages are handled again.
 *
 * It uses two connections, named after the client id: one to publish (one confirm channel,
 * persistent mandatory messages) and one to consume (a channel per subscription), so that
 * a resource alarm that blocks publishing never holds back acknowledgements. A lost
 * connection is connected again in the background, with backoff; subscriptions consume
 * again after an outage on their own, and a message that was out when its channel went is
 * settled quietly (RabbitMQ has requeued it, and delivers it again).
 *
 * @example
 * const broker = createBroker(resolveRabbitMqSettings('amqp://guest:guest@localhost:5672', process.env, {}), { logger, clientId: 'orders-service' })
 * await broker.connect()
 * const [error] = await broker.publish([{ topic: 'orders', value: Buffer.from('{}'), key: '42', headers: {} }])
 */
export class RabbitMqBroker implements Broker {
  readonly kind = 'rabbitmq' as const
  /**
   * Batches the producer may have on their way at once: one confirm channel confirms each
   * message by itself, and the publisher writes overlapping publish() calls in call order,
   * so up to 8 batches share a round trip to RabbitMQ instead of waiting for each other.
   */
  readonly maxPublishesInFlight = 8
  readonly #settings: RabbitMqSettings
  readonly #log: Logger
  readonly #publishing: RabbitMqConnection
  readonly #consuming: RabbitMqConnection
  readonly #publisher: RabbitMqPublisher
  readonly #retries: RabbitMqRetries
  readonly #subscriptions = new Set<RabbitMqSubscription>()
  #closed = false

  constructor (settings: RabbitMqSettings, deps: BrokerDeps) {
    this.#settings = settings
    this.#log = deps.logger
    this.#publishing = new RabbitMqConnection(settings, `${deps.clientId} (publish)`, deps.logger)
    this.#consuming = new RabbitMqConnection(settings, `${deps.clientId} (consume)`, deps.logger)
    this.#publisher = new RabbitMqPublisher(this.#publishing, settings.exchange, deps.clientId)
    this.#retries = new RabbitMqRetries(this.#consuming, this.#sendToQueue)
  }

  /** Opens the publishing connection and channel and declares the exchange. Idempotent. */
  async connect (): Promise<void> {
    this.#assertOpen()
    await this.#publisher.ready()
  }

  /**
   * Publishes each message with `persistent` and `mandatory` on the confirm channel and
   * resolves, in order, `undefined` once RabbitMQ confirmed it, or the error: refused
   * (basic.nack), unroutable (`HERALD_UNROUTABLE`: no queue bound to the topic), or the
   * channel or connection lost before the confirm. `onAcknowledged(i)`: as each confirm arrives.
   */
  async publish (messages: OutgoingMessage[], onAcknowledged?: (index: number) => void): Promise<Array<Error | undefined>> {
    if (this.#closed) {
      const err = brokerClosedError('RabbitMQ')
      return messages.map(() => err)
    }
    if (messages.length === 0) return []
    return await this.#publisher.publish(messages, onAcknowledged)
  }

  /**
   * Declares the group's queues (and the dead-letter queues) and consumes them on a new
   * channel with a prefetch of `maxInFlight`. Handed-over messages are settled with
   * `ack()` (basic.ack) or `release()` (basic.nack with requeue). Rejects with a
   * `ConfigError` for a topic or group RabbitMQ cannot carry (`*`, `#`, reserved names).
   */
  async subscribe (options: SubscribeOptions, onDelivery: DeliveryHandler): Promise<Subscription> {
    this.#assertOpen()
    checkSubscribeOptions(options)
    const queueType = this.#settings.options.queueType
    const subscription: RabbitMqSubscription = new RabbitMqSubscription(options, onDelivery, {
      connection: this.#consuming,
      exchange: this.#settings.exchange,
      queueArguments: queueType === undefined ? undefined : { 'x-queue-type': queueType },
      putBack: async (queue, content, properties, headers) => await this.#publisher.putBack(queue, content, properties, headers),
      log: childLogger(this.#log, { group: options.group }),
      onClosed: () => this.#subscriptions.delete(subscription)
    })
    await subscription.start()
    if (this.#closed) {
      await subscription.abort()
      this.#assertOpen()
    }
    this.#subscriptions.add(subscription)
    return subscription
  }

  async health (): Promise<BrokerHealth> {
    const address = this.#publishing.address
    if (this.#closed) return { ok: false, broker: 'rabbitmq', detail: `closed (${address})` }
    try {
      await this.#publisher.ready()
    } catch (err) {
      return { ok: false, broker: 'rabbitmq', detail: err instanceof Error ? err.message : String(err) }
    }
    const blocked = this.#publishing.blockedReason
    if (blocked !== undefined) return { ok: false, broker: 'rabbitmq', detail: `${address}: RabbitMQ blocks publishing (${blocked})` }
    if (this.#subscriptions.size > 0 && !this.#consuming.isOpen) {
      return { ok: false, broker: 'rabbitmq', detail: `${address}: the consuming connection is lost; reconnecting` }
    }
    return { ok: true, broker: 'rabbitmq', detail: address }
  }

  /** The messages ready in each topic's queue of the group (rabbitmq-lag.ts), asked on the consuming connection. */
  async lag (group: string, topics: readonly string[]): Promise<TopicLag[]> {
    this.#assertOpen()
    return await rabbitMqLag(this.#consuming, group, topics)
  }

  /** A pass over a dead-letter queue on its own channel of the consuming connection (rabbitmq-dead-letters.ts). */
  async deadLetters (destination: string): Promise<DeadLetterCursor> {
    this.#assertOpen()
    return await rabbitMqDeadLetters(this.#consuming, this.#sendToQueue, destination)
  }

  /** Sends straight to a queue (default exchange), persistent and confirmed: a replay, a retry. */
  readonly #sendToQueue: SendToQueue = async (queue, content, properties, headers) => await this.#publisher.putBack(queue, content, properties, headers)

  /** Sends a retry to the tier queue of its delay, which dead-letters it back to the group's queue once due (rabbitmq-retries.ts). */
  async scheduleRetry (group: string, message: OutgoingMessage, dueAt: number): Promise<void> {
    this.#assertOpen()
    await this.#retries.schedule(group, message, dueAt)
  }

  /** Closes subscriptions at once (unsettled messages are requeued by RabbitMQ), the publishing channel, then both connections. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all([...this.#subscriptions].map(async s => await s.abort()))
    await this.#publisher.close()
    await Promise.all([this.#publishing.close(), this.#consuming.close()])
  }

  #assertOpen (): void {
    if (this.#closed) throw brokerClosedError('RabbitMQ')
  }
}

function checkSubscribeOptions (options: SubscribeOptions): void {
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new ConfigError('topics', 'give at least one topic to subscribe to')
  }
  for (const topic of options.topics) checkTopicName(topic)
  checkGroupName(options.group, options.topics)
  for (const topic of options.deadLetterTopics) checkTopicName(topic, 'deadLetter')
  if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1) {
    throw new ConfigError('maxInFlight', `must be a whole number above 0, got ${JSON.stringify(options.maxInFlight)}`)
  }
}
