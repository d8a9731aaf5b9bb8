// The runner's view of the brokers, through the raw clients: create a run's topic before
// the contenders start, count what reached it afterwards (the verification), delete it.
import amqplib, { type Channel } from './amqplib.js'
import { Redis } from 'ioredis'
import { Kafka, logLevel } from 'kafkajs'
import { HERALD_EXCHANGE, KAFKA_BROKERS, RABBITMQ_URL, REDIS_URL, type BrokerName } from './common.js'

/** Partitions of every Kafka topic the bench creates (the raw loop consumes them concurrently). */
export const KAFKA_PARTITIONS = 3

/** The RabbitMQ queue bound to a topic on Herald's exchange, so published messages are kept and can be counted. */
export function countQueueOf (topic: string): string {
  return `${topic}.bench-count`
}

const kafka = new Kafka({ clientId: 'herald-bench', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING })

/** Creates the topic (Kafka: 3 partitions; RabbitMQ: Herald's exchange and a counting queue bound to the topic). */
export async function prepare (broker: BrokerName, topic: string): Promise<void> {
  if (broker === 'kafka') {
    const admin = kafka.admin()
    await admin.connect()
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: KAFKA_PARTITIONS, replicationFactor: 1 }], waitForLeaders: true })
    } finally {
      await admin.disconnect()
    }
  } else if (broker === 'rabbitmq') {
    await withChannel(async (ch) => {
      await ch.assertExchange(HERALD_EXCHANGE, 'topic', { durable: true })
      await ch.assertQueue(countQueueOf(topic), { durable: true })
      await ch.bindQueue(countQueueOf(topic), HERALD_EXCHANGE, topic)
    })
  }
}

/** How many messages the topic holds: Kafka's end offsets, the counting queue's depth, the stream's length. */
export async function count (broker: BrokerName, topic: string): Promise<number> {
  if (broker === 'kafka') {
    const admin = kafka.admin()
    await admin.connect()
    try {
      const offsets = await admin.fetchTopicOffsets(topic)
      return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0)
    } finally {
      await admin.disconnect()
    }
  }
  if (broker === 'rabbitmq') return await withChannel(async ch => (await ch.checkQueue(countQueueOf(topic))).messageCount)
  if (broker === 'redis') return await withRedis(async r => await r.xlen(topic))
  return Number.NaN
}

/** Deletes what a run created: topics / streams, queues and exchanges named after it. */
export async function cleanup (broker: BrokerName, topics: string[], queues: string[] = [], exchanges: string[] = []): Promise<void> {
  if (broker === 'kafka') {
    const admin = kafka.admin()
    await admin.connect()
    try {
      const existing = new Set(await admin.listTopics())
      const mine = existing.size === 0 ? [] : [...existing].filter(t => topics.some(p => t === p || t.startsWith(`${p}.`)))
      if (mine.length > 0) await admin.deleteTopics({ topics: mine, timeout: 10_000 })
    } finally {
      await admin.disconnect()
    }
  } else if (broker === 'rabbitmq') {
    for (const q of queues) await withChannel(async ch => { await ch.deleteQueue(q) }).catch(() => {})
    for (const e of exchanges) await withChannel(async ch => { await ch.deleteExchange(e) }).catch(() => {})
  } else if (broker === 'redis') {
    await withRedis(async (r) => {
      for (const t of topics) {
        const keys = await r.keys(`${t}*`)
        if (keys.length > 0) await r.del(...keys)
      }
    })
  }
}

async function withChannel<T> (fn: (ch: Channel) => Promise<T>): Promise<T> {
  const connection = await amqplib.connect(RABBITMQ_URL)
  try {
    const ch = await connection.createChannel()
    return await fn(ch)
  } finally {
    await connection.close().catch(() => {})
  }
}

async function withRedis<T> (fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(REDIS_URL, { lazyConnect: true })
  await r.connect()
  try {
    return await fn(r)
  } finally {
    r.disconnect()
  }
}
