// What the HTTP contenders share: the naive per-request send, and counting the embedded
// broker's topic (it lives in the server process) when the runner asks.
import amqplib from '../amqplib.js'
import { Redis } from 'ioredis'
import { Kafka, logLevel, Partitioners } from 'kafkajs'
import { messageHandler, startConsumers, type Messaging } from '../../dist/lib/index.js'
import { envelope, HERALD_EXCHANGE, KAFKA_BROKERS, RABBITMQ_URL, REDIS_URL, type BrokerName } from '../common.js'

export const EVENT = { name: 'order.placed', keyField: 'requestId' }

/**
 * A naive route's send: one raw client call per request, awaited before the reply, with the
 * bytes Herald would send (envelope + headers); no coalescing of its own.
 */
export async function naiveSender (broker: BrokerName, topic: string): Promise<(data: { requestId: number }) => Promise<void>> {
  if (broker === 'kafka') {
    const producer = new Kafka({ clientId: 'bench-naive', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING })
      .producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    return async (data) => {
      const { body, headers } = envelope(data)
      await producer.send({ topic, acks: -1, messages: [{ key: String(data.requestId), value: body, headers }] })
    }
  }
  if (broker === 'rabbitmq') {
    const channel = await (await amqplib.connect(RABBITMQ_URL)).createConfirmChannel()
    return async (data) => {
      const { body, headers } = envelope(data)
      await new Promise<void>((resolve, reject) => {
        channel.publish(HERALD_EXCHANGE, topic, body, { persistent: true, mandatory: true, contentType: 'application/json', headers: { ...headers, key: String(data.requestId) } },
          (err: unknown) => { if (err === null || err === undefined) resolve(); else reject(err) })
      })
    }
  }
  if (broker === 'redis') {
    const redis = new Redis(REDIS_URL)
    return async (data) => {
      const { body, headers } = envelope(data)
      await redis.xadd(topic, '*', 'data', body, 'key', String(data.requestId), 'headers', JSON.stringify(headers))
    }
  }
  throw new Error('the naive route needs a real broker')
}

/** Counts the events on an embedded-broker topic: a new group reads it from the start; waits for `expect` or 3 s of quiet. */
export async function countMemoryTopic (messaging: Messaging, topic: string, expect: number): Promise<number> {
  let seen = 0
  let last = Date.now()
  const handler = messageHandler({ topic, group: 'bench-count' }, async () => { seen++; last = Date.now() })
  const runner = await startConsumers({ messaging, handlers: [handler], signals: false })
  while (seen < expect && Date.now() - last < 3000) await new Promise(resolve => setTimeout(resolve, 50))
  await runner.stop()
  return seen
}
