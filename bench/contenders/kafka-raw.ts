// Raw kafkajs, as a careful engineer writes it. Producer: the same settings as Herald's
// (idempotent, acks -1, the Java partitioner), sends made while a request is in flight go
// together in the next one. Consumer: eachBatch, every partition at once, one commit per batch;
// ready once the group has assigned it every partition of its topic.
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs'
import { KAFKA_BROKERS } from '../common.js'
import { KAFKA_PARTITIONS } from '../brokers.js'
import { AssignmentWait } from './kafka-assignment.js'
import { coalescing } from './kafka-coalesce.js'
import type { RawClient } from './raw-client.js'

export function kafkaRaw (): RawClient {
  const kafka = new Kafka({ clientId: 'bench-raw', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING })
  let producer: Producer | undefined
  let connecting: Promise<Producer> | undefined
  const consumers: Array<{ disconnect: () => Promise<void> }> = []

  const connected = async (): Promise<Producer> => {
    connecting ??= (async () => {
      const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
      await p.connect()
      producer = p
      return p
    })()
    return await connecting
  }

  const send = coalescing(async (batch) => {
    const p = await connected()
    const byTopic = new Map<string, Array<{ key: string, value: Buffer, headers?: Record<string, string> }>>()
    for (const m of batch) {
      let list = byTopic.get(m.topic)
      if (list === undefined) byTopic.set(m.topic, list = [])
      list.push(m.headers === undefined ? { key: m.key, value: m.value } : { key: m.key, value: m.value, headers: m.headers })
    }
    await p.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) })
  })

  return {
    async send (topic, key, value, headers) {
      await send({ topic, key, value, headers })
    },
    async consume (topic, group, handle) {
      const consumer = kafka.consumer({ groupId: group })
      consumers.push(consumer)
      const assigned = new AssignmentWait(topic, group)
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => assigned.joined(t => payload.memberAssignment[t]))
      consumer.on(consumer.events.CRASH, ({ payload }) => { if (!payload.restart) assigned.failed(payload.error) })
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: KAFKA_PARTITIONS,
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          for (const m of batch.messages) {
            if (m.value !== null) handle(m.value)
            resolveOffset(m.offset)
          }
          if (batch.messages.length === 0) return
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }])
          await heartbeat()
        }
      })
      try {
        await assigned.wait()
      } catch (err) {
        throw new Error(`raw kafkajs consumer: ${(err as Error).message}`, { cause: err })
      }
    },
    async close () {
      for (const c of consumers) await c.disconnect().catch(() => {})
      await producer?.disconnect().catch(() => {})
    }
  }
}
