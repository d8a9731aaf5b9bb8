import type { MessageProperties } from 'amqplib'
import type { OutgoingMessage } from '../broker.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import type { SendToQueue } from './rabbitmq-dead-letters.js'
import { topologyError } from './rabbitmq-errors.js'
import { encodeHeaders } from './rabbitmq-headers.js'
import { groupQueueName } from './rabbitmq-names.js'

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE

/** The delay tiers below an hour; from an hour on, every whole hour is a tier. */
export const RETRY_TIERS_MS = [SECOND, 5 * SECOND, 10 * SECOND, 30 * SECOND, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR] as const

/** The smallest tier at least `delay` ms: a retry is delivered at its due time or a little after, never before. */
export function retryTier (delay: number): number {
  const tier = RETRY_TIERS_MS.find(t => t >= delay)
  return tier ?? Math.ceil(delay / HOUR) * HOUR
}

/** The queue where a group's retries of a topic wait for `tier` ms: `<topic>.<group>.retry.<tier>`. */
export function retryQueueName (topic: string, group: string, tier: number): string {
  return `${groupQueueName(topic, group)}.retry.${tier}`
}

/** Headers RabbitMQ adds when it dead-letters a message: a retry's next trip through a tier queue must not carry them as text. */
const DEATH_HEADERS = ['x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason', 'x-last-death-exchange', 'x-last-death-queue', 'x-last-death-reason', 'x-delivery-count']

/**
 * Durable retries on RabbitMQ. A retry is sent (default exchange, persistent, confirmed)
 * to the tier queue of its delay, declared on demand: durable, with `x-message-ttl` =
 * the tier and `x-dead-letter-exchange` '' + `x-dead-letter-routing-key` = the group's
 * queue, so RabbitMQ moves it back to that group's queue only once it expired. One queue
 * per tier because a message's TTL only expires at the head of its queue: in a queue
 * where every message has the same TTL, the head is always the first due.
 */
export class RabbitMqRetries {
  readonly #connection: RabbitMqConnection
  readonly #send: SendToQueue
  readonly #declared = new Set<string>()

  constructor (connection: RabbitMqConnection, send: SendToQueue) {
    this.#connection = connection
    this.#send = send
  }

  async schedule (group: string, message: OutgoingMessage, dueAt: number): Promise<void> {
    const tier = retryTier(Math.max(1, dueAt - Date.now()))
    const queue = retryQueueName(message.topic, group, tier)
    if (!this.#declared.has(queue)) {
      await this.#declare(queue, groupQueueName(message.topic, group), tier)
      this.#declared.add(queue)
    }
    const headers = encodeHeaders(message.headers, message.key)
    for (const name of DEATH_HEADERS) delete headers[name]
    const properties = { contentType: message.headers['content-type'] ?? 'application/json' } as unknown as MessageProperties
    const err = await this.#send(queue, message.value, properties, headers)
    if (err !== undefined) {
      // The queue may have been deleted under us: declare it again next time.
      this.#declared.delete(queue)
      throw err
    }
  }

  async #declare (queue: string, target: string, tier: number): Promise<void> {
    const channel = await this.#connection.channel()
    try {
      await channel.assertQueue(queue, {
        durable: true,
        arguments: { 'x-message-ttl': tier, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': target }
      })
    } catch (err) {
      throw topologyError(`could not declare the retry queue "${queue}"`, err, this.#connection.secrets)
    } finally {
      await channel.close().catch(() => {})
    }
  }
}
