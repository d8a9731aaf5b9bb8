// Raw @platformatic/kafka (1.x), the same loop as the kafkajs one (kafka-raw.ts) on another
// client, to tell what the client costs. Producer: idempotent, acks=all, the Java
// partitioner (`compatibilityPartitioner`: the partitions kafkajs and Herald pick), sends
// made while a request is in flight go together in the next one (kafka-coalesce.ts).
// Consumer: the group's message stream with manual commits; the handler runs for each
// message, then one commit per batch: the next offset of every partition handled since the
// last commit, in one OffsetCommit request, one at a time. Ready once the group has
// assigned it every partition of its topic.
import {
  compatibilityPartitioner, Consumer, MessagesStreamFallbackModes, MessagesStreamModes, ProduceAcks, Producer,
  stringSerializer, type CommitOptionsPartition, type Message, type MessagesStream
} from '@platformatic/kafka'
import { KAFKA_BROKERS } from '../common.js'
import { AssignmentWait } from './kafka-assignment.js'
import { coalescing } from './kafka-coalesce.js'
import type { RawClient } from './raw-client.js'

export function kafkaPlatformatic (): RawClient {
  let producer: Producer<string, Buffer, string, string> | undefined
  const consumers: Array<{ consumer: Consumer, stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>, idle: () => Promise<void> }> = []

  const send = coalescing(async (batch) => {
    producer ??= new Producer({
      clientId: 'bench-raw-platformatic',
      bootstrapBrokers: KAFKA_BROKERS,
      idempotent: true,
      acks: ProduceAcks.ALL,
      autocreateTopics: false,
      partitioner: compatibilityPartitioner,
      serializers: { key: stringSerializer, headerKey: stringSerializer, headerValue: stringSerializer }
    })
    await producer.send({ messages: batch.map(m => m.headers === undefined ? { topic: m.topic, key: m.key, value: m.value } : { topic: m.topic, key: m.key, value: m.value, headers: m.headers }) })
  })

  return {
    async send (topic, key, value, headers) {
      await send({ topic, key, value, headers })
    },
    async consume (topic, group, handle) {
      const consumer = new Consumer({ clientId: 'bench-raw-platformatic', bootstrapBrokers: KAFKA_BROKERS, groupId: group, autocommit: false })
      const assigned = new AssignmentWait(topic, group)
      consumer.on('consumer:group:join', ({ assignments }) => assigned.joined(t => assignments?.find(a => a.topic === t)?.partitions))
      let stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>
      try {
        // Joins the group (the first 'consumer:group:join') before it resolves; reads from
        // the group's committed offsets, from the beginning where there are none.
        stream = await consumer.consume({ topics: [topic], mode: MessagesStreamModes.COMMITTED, fallbackMode: MessagesStreamFallbackModes.EARLIEST, autocommit: false })
      } catch (err) {
        await closeConsumer(consumer).catch(() => {})
        throw err
      }

      // Offsets handled and not yet committed (the next one to read, per partition), and the commit in flight.
      const handled = new Map<number, CommitOptionsPartition>()
      let committing: Promise<void> | undefined
      let scheduled = false
      const commit = async (): Promise<void> => {
        while (handled.size > 0) {
          const offsets = [...handled.values()]
          handled.clear()
          try {
            await consumer.commit({ offsets })
          } catch (err) {
            // Not committed (the client already rejoined and tried again after a rebalance):
            // kept for the next commit unless a later offset of its partition is waiting.
            for (const o of offsets) if (!handled.has(o.partition)) handled.set(o.partition, o)
            console.error('raw platformatic consumer: commit failed, trying again:', (err as Error).message)
            await new Promise(resolve => setTimeout(resolve, 250))
            return
          }
        }
      }
      const schedule = (): void => {
        if (scheduled) return
        scheduled = true
        // Every message of a fetch is pushed in the same tick: one commit covers them all.
        setImmediate(() => {
          scheduled = false
          committing ??= commit().finally(() => { committing = undefined; if (handled.size > 0) schedule() })
        })
      }
      stream.on('data', (m: Message<Buffer, Buffer, Buffer, Buffer>) => {
        handle(m.value)
        handled.set(m.partition, { topic: m.topic, partition: m.partition, offset: m.offset + 1n, leaderEpoch: -1 })
        schedule()
      })
      stream.on('error', (err: unknown) => { assigned.failed(err); console.error('raw platformatic consumer:', err) })
      consumers.push({ consumer, stream, idle: async () => { while (committing !== undefined || scheduled) await (committing ?? new Promise(resolve => setImmediate(resolve))) } })

      try {
        await assigned.wait()
      } catch (err) {
        throw new Error(`raw @platformatic/kafka consumer: ${(err as Error).message}`, { cause: err })
      }
    },
    async close () {
      for (const { consumer, stream, idle } of consumers) {
        // The last commit goes before the member leaves, as kafkajs's disconnect waits for its running batch.
        await idle().catch(() => {})
        await stream.close().catch(() => {})
        await closeConsumer(consumer).catch(() => {})
      }
      await producer?.close().catch(() => {})
    }
  }
}

/** Leaves the group and closes (forced: its stream too, closed already in the normal course). */
async function closeConsumer (consumer: Consumer): Promise<void> {
  await new Promise<void>((resolve, reject) => { consumer.close(true, err => { if (err != null) reject(err); else resolve() }) })
}
