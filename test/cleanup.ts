// Removes what the conformance suite created on a real broker: this run's topics, groups,
// queues and streams (their names contain RUN_ID), so the shared brokers do not fill up.
import amqplib from 'amqplib'
import { Kafka, logLevel } from 'kafkajs'
import { Redis } from 'ioredis'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { brokerOptions, RUN_ID } from './helpers.js'

export async function cleanUpRun (kind: BrokerKind, queues: string[]): Promise<void> {
  const options = brokerOptions(kind)
  switch (kind) {
    case 'memory':
      return
    case 'kafka': {
      const admin = new Kafka({ brokers: [String(options.bootstrapServers)], logLevel: logLevel.NOTHING }).admin()
      await admin.connect()
      try {
        const topics = (await admin.listTopics()).filter(t => t.includes(RUN_ID))
        if (topics.length > 0) await admin.deleteTopics({ topics })
        const groups = (await admin.listGroups()).groups.map(g => g.groupId).filter(g => g.includes(RUN_ID))
        if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {})
      } finally {
        await admin.disconnect()
      }
      return
    }
    case 'redis': {
      const redis = new Redis(String(options.url), { lazyConnect: true })
      await redis.connect()
      try {
        const keys: string[] = []
        for await (const batch of redis.scanStream({ match: `*${RUN_ID}*`, count: 500 })) keys.push(...batch as string[])
        if (keys.length > 0) await redis.del(...keys)
      } finally {
        redis.disconnect()
      }
      return
    }
    case 'rabbitmq': {
      const connection = await amqplib.connect(String(options.url))
      try {
        const channel = await connection.createChannel()
        for (const queue of queues) await channel.deleteQueue(queue)
        await channel.close()
      } finally {
        await connection.close()
      }
    }
  }
}
