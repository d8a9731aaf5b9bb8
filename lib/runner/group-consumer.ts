import type { Broker, Delivery, Subscription } from '../brokers/broker.js'
import type { Logger } from '../logger.js'
import type { HandlerConsumer } from './handler-consumer.js'

/**
 * One subscription per group and process, shared by every handler of that group: Kafka
 * assigns a group's partitions as if all its members read the same topics, so two
 * consumers of one group with different topics in one process would take each other's
 * partitions. Each message goes to the handler of its topic.
 */
export class GroupConsumer {
  readonly group: string
  readonly #handlers: HandlerConsumer[]
  readonly #byTopic = new Map<string, HandlerConsumer>()
  readonly #shutdownTimeout: number
  readonly #log: Logger
  #subscription: Subscription | undefined
  #stopping: Promise<void> | undefined

  constructor (group: string, handlers: HandlerConsumer[], shutdownTimeout: number, logger: Logger) {
    this.group = group
    this.#handlers = handlers
    this.#shutdownTimeout = shutdownTimeout
    this.#log = logger
    for (const h of handlers) for (const t of h.settings.topics) this.#byTopic.set(t, h)
  }

  get topics (): string[] {
    return [...this.#byTopic.keys()]
  }

  /** Subscribes; resolves once the group is ready to receive. */
  async start (broker: Broker): Promise<void> {
    this.#subscription = await broker.subscribe({
      group: this.group,
      topics: this.topics,
      maxInFlight: this.#handlers.reduce((sum, h) => sum + h.maxInFlight, 0),
      maxWaiting: this.#handlers.reduce((sum, h) => sum + h.maxWaitingRetries, 0),
      deadLetterTopics: [...new Set(this.#handlers.flatMap(h => h.deadLetterTopics()))]
    }, (delivery) => this.#dispatch(delivery))
  }

  async #dispatch (delivery: Delivery): Promise<void> {
    const handler = this.#byTopic.get(delivery.topic)
    if (handler !== undefined) return await handler.handle(delivery)
    // Only a broker bug gets here; give the message back rather than lose it.
    this.#log.error({ topic: delivery.topic, group: this.group, messageId: delivery.id }, 'message for a topic no handler of this group consumes; released')
    await delivery.release().catch(() => {})
  }

  /**
   * Stops fetching, releases what waits, lets running handlers finish for up to the
   * shutdown timeout (then aborts them), and leaves the group once all is settled.
   */
  stop (): Promise<void> {
    this.#stopping ??= (async () => {
      for (const h of this.#handlers) h.beginStop()
      const subscription = this.#subscription
      if (subscription === undefined) return
      await subscription.pause()
      const timer = setTimeout(() => { for (const h of this.#handlers) h.force() }, this.#shutdownTimeout)
      try {
        await subscription.close()
      } finally {
        clearTimeout(timer)
      }
    })()
    return this.#stopping
  }
}
