// What a broker holds in its durable-retry store, read below Herald (tests of durableRetryAfter).
import amqplib from 'amqplib'
import { Redis } from 'ioredis'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { retryQueueName, retryTier } from '../../lib/brokers/rabbitmq/rabbitmq-retries.js'
import { retryDueKey } from '../../lib/brokers/redis/redis-retries.js'
import { brokerOptions } from '../helpers.js'

/**
 * How many retries of `group` on `topic` the broker holds in its retry store (RabbitMQ: the
 * tier queue of `delay`; Redis: the due set), or undefined for the embedded broker (a timer).
 */
export async function heldRetries (kind: BrokerKind, topic: string, group: string, delay: number): Promise<number | undefined> {
  const options = brokerOptions(kind)
  if (kind === 'redis') {
    const redis = new Redis(String(options.url), { lazyConnect: true })
    await redis.connect()
    try {
      return await redis.zcard(retryDueKey(options.redis?.prefix ?? '', topic, group))
    } finally {
      redis.disconnect()
    }
  }
  if (kind === 'rabbitmq') {
    const connection = await amqplib.connect(String(options.url))
    try {
      const channel = await connection.createChannel()
      channel.on('error', () => {})
      try {
        return (await channel.checkQueue(retryQueueName(topic, group, retryTier(delay)))).messageCount
      } catch {
        return 0
      }
    } finally {
      await connection.close().catch(() => {})
    }
  }
  return undefined
}
