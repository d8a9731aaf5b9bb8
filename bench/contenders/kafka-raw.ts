// Raw kafkajs, as a careful engineer writes it. Producer: the same settings as Herald's
// (idempotent, acks -1, the Java partitioner), sends made while a request is in flight go
// together in the next one. Consumer: eachBatch, every partition at once, one commit per batch.
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs'
import { KAFKA_BROKERS } from '../common.js'
import { KAFKA_PARTITIONS } from '../brokers.js'
import type { RawClient } from './raw-client.js'

interface Pending { topic: string, key: string, value: Buffer, headers: Record<string, string> | undefined, resolve: () => void, reject: (err: unknown) => void }

const MAX_BATCH = 500

export function kafkaRaw (): RawClient {
  const kafka = new Kafka({ clientId: 'bench-raw', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING })
  let producer: Producer | undefined
  let connecting: Promise<Producer> | undefined
  const consumers: Array<{ disconnect: () => Promise<void> }> = []
  let queue: Pending[] = []
  let sending = false

  const connected = async (): Promise<Producer> => {
    connecting ??= (async () => {
      const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
      await p.connect()
      producer = p
      return p
    })()
    return await connecting
  }

  const flush = async (): Promise<void> => {
    if (sending) return
    sending = true
    try {
      const p = await connected()
      while (queue.length > 0) {
        const batch = queue.slice(0, MAX_BATCH)
        queue = queue.slice(batch.length)
        const byTopic = new Map<string, Array<{ key: string, value: Buffer, headers?: Record<string, string> }>>()
        for (const m of batch) {
          let list = byTopic.get(m.topic)
          if (list === undefined) byTopic.set(m.topic, list = [])
          list.push(m.headers === undefined ? { key: m.key, value: m.value } : { key: m.key, value: m.value, headers: m.headers })
        }
        try {
          await p.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) })
          for (const m of batch) m.resolve()
        } catch (err) {
          for (const m of batch) m.reject(err)
        }
      }
    } finally {
      sending = false
    }
  }

  return {
    async send (topic, key, value, headers) {
      await new Promise<void>((resolve, reject) => {
        queue.push({ topic, key, value, headers, resolve, reject })
        if (queue.length === 1) setImmediate(() => { void flush() })
      })
    },
    async consume (topic, group, handle) {
      const consumer = kafka.consumer({ groupId: group })
      consumers.push(consumer)
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      const joined = new Promise<void>(resolve => consumer.on(consumer.events.GROUP_JOIN, () => resolve()))
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
      await joined
    },
    async close () {
      for (const c of consumers) await c.disconnect().catch(() => {})
      await producer?.disconnect().catch(() => {})
    }
  }
}
