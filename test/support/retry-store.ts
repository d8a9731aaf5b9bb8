// What a broker holds in its durable-retry store, read below Herald (tests of durableRetryAfter).
import amqplib from 'amqplib'
import { Redis } from 'ioredis'
import { Kafka, logLevel } from 'kafkajs'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { retryQueueName, retryTier } from '../../lib/brokers/rabbitmq/rabbitmq-retries.js'
import { retryDueKey } from '../../lib/brokers/redis/redis-retries.js'
import { groupRetryTopic } from '../../lib/brokers/shared/group-destination.js'
import { brokerOptions } from '../helpers.js'

/**
 * How many retries of `group` on `topic` the broker holds in its retry store (RabbitMQ: the
 * tier queue of `delay`; Redis: the due set; Kafka: the group's retry topic past its
 * committed offsets), or undefined for the embedded broker (a timer).
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
  if (kind === 'kafka') {
    // The group's retry topic past the group's committed offsets: what it has not handled yet.
    const admin = new Kafka({ brokers: [String(options.bootstrapServers)], logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    try {
      const retryTopic = groupRetryTopic(topic, group)
      const ends = await admin.fetchTopicOffsets(retryTopic)
      const [committed] = await admin.fetchOffsets({ groupId: group, topics: [retryTopic] })
      return ends.reduce((sum, end) => {
        const at = Number(committed?.partitions.find(p => p.partition === end.partition)?.offset ?? -1)
        return sum + Number(end.high) - Math.max(at, Number(end.low))
      }, 0)
    } finally {
      await admin.disconnect()
    }
  }
  return undefined
}
