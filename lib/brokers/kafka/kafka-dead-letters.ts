import type { Admin, Consumer, Kafka } from 'kafkajs'
import { BrokerError, ErrorCode, HeraldError } from '../../errors.js'
import type { DeadLetterCursor, OutgoingMessage, StoredMessage } from '../broker.js'
import { groupRetryTopic } from '../shared/group-destination.js'
import { decodeMark, encodeMark } from './kafka-commit-ledger.js'
import { KAFKA_CONSUMER_DEFAULTS } from './kafka-config.js'
import { kafkaError } from './kafka-errors.js'
import { decodeHeaders } from './kafka-headers.js'

/** Letters read ahead of `read()` before the consumer pauses. */
const READ_AHEAD = 500
/**
 * The pass's group membership: a pass killed half-way leaves a member Kafka waits for until
 * its session times out, and the next pass joins only then; 10 s, not the consumers' 30 s.
 */
const PASS_SESSION = { sessionTimeout: 10_000, heartbeatInterval: 1_000 }
/** Removed ranges a partition's commit can record beyond its offset (the ledger's limit). */
const MAX_RANGES = 64

export interface KafkaDeadLetterDeps {
  kafka: Kafka
  admin: Admin
  address: string
  secrets: string[]
  /** Publishes one message through the broker (topic created if needed); resolves with its error, if any. */
  send: (message: OutgoingMessage) => Promise<Error | undefined>
}

interface PartitionState {
  /** The committed offset of the bookkeeping group: letters below it are removed. */
  committed: number
  /** Removed letters above `committed`, `[from, to]` inclusive. */
  removed: Array<[number, number]>
  /** The next offset to hand out; the end (the log's end when the pass began). */
  next: number
  end: number
}

/** The group that records which letters of `topic` were removed (its committed offset and the ranges above it). */
export function bookkeepingGroup (topic: string): string {
  return `herald-dlq.${topic}`
}

/**
 * A pass over a dead-letter topic. Kafka cannot delete one message, so removing a letter is
 * recorded in the commits of the group `herald-dlq.<topic>`: its offset (everything below is
 * removed) and, in the commit's metadata, the removed ranges above it; a pass reads from that
 * offset and skips those ranges. The pass's consumer is that group's only member (one pass at
 * a time per topic), reads to the end each partition had when it began, and commits only on
 * `remove()`. A replay goes to the group's own topic `<topic>.<group>.retry`.
 */
export async function kafkaDeadLetters (deps: KafkaDeadLetterDeps, topic: string): Promise<DeadLetterCursor> {
  const groupId = bookkeepingGroup(topic)
  const parts = await startingPoints(deps, topic, groupId)
  const buffer: StoredMessage[] = []
  const open = [...parts].filter(([, p]) => p.next < p.end).map(([partition]) => partition)
  let consumer: Consumer | undefined
  let failure: Error | undefined
  let wake: (() => void) | undefined
  let paused = false
  const done = (): boolean => [...parts.values()].every(p => p.next >= p.end)
  const notify = (): void => { wake?.(); wake = undefined }

  if (open.length > 0) {
    const c = consumer = deps.kafka.consumer({ ...KAFKA_CONSUMER_DEFAULTS, ...PASS_SESSION, groupId, allowAutoTopicCreation: false })
    c.on(c.events.CRASH, (e) => { failure = kafkaError(`reading the dead-letter topic "${topic}" stopped`, e.payload.error, deps.secrets); notify() })
    try {
      await c.connect()
      await c.subscribe({ topics: [topic], fromBeginning: true })
      await c.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const p = parts.get(batch.partition)
          if (p === undefined) return
          for (const m of batch.messages) {
            const offset = Number(m.offset)
            if (offset < p.next) continue
            if (offset >= p.end) break
            p.next = offset + 1
            if (!within(p, offset)) buffer.push({ id: `${batch.partition}:${offset}`, value: m.value ?? Buffer.alloc(0), key: m.key?.toString('utf8'), headers: decodeHeaders(m.headers) })
          }
          if (p.next >= p.end) c.pause([{ topic, partitions: [batch.partition] }])
          if (buffer.length >= READ_AHEAD && !paused) {
            paused = true
            c.pause([{ topic }])
          }
          notify()
        }
      })
    } catch (err) {
      await c.disconnect().catch(() => {})
      throw kafkaError(`could not read the dead-letter topic "${topic}" at ${deps.address}`, err, deps.secrets)
    }
  }

  let total = 0
  for (const p of parts.values()) total += Math.max(0, p.end - p.committed) - p.removed.reduce((n, [from, to]) => n + Math.max(0, Math.min(to, p.end - 1) - from + 1), 0)
  return {
    total,
    read: async (limit) => {
      while (buffer.length === 0 && !done() && failure === undefined) {
        if (paused && consumer !== undefined) {
          paused = false
          consumer.resume([{ topic, partitions: [...parts].filter(([, p]) => p.next < p.end).map(([n]) => n) }])
        }
        await new Promise<void>(resolve => { wake = resolve })
      }
      if (buffer.length === 0 && failure !== undefined) throw failure
      return buffer.splice(0, limit)
    },
    remove: async (message) => {
      const [partition, offset] = message.id.split(':').map(Number) as [number, number]
      const p = parts.get(partition)
      if (p === undefined || consumer === undefined) return
      const ranges = addRemoved(p, offset)
      if (ranges.removed.length > MAX_RANGES) {
        throw new HeraldError(`cannot remove letter ${message.id} of "${topic}": more than ${MAX_RANGES} separate runs of removed letters in partition ${partition}, which is all one Kafka commit can record; remove (or replay) the letters kept between them first, e.g. without --filter`, { code: ErrorCode.Unsupported })
      }
      try {
        await consumer.commitOffsets([{ topic, partition, offset: String(ranges.committed), metadata: encodeMark({ offset: ranges.committed, deliveries: 0, acked: ranges.removed }) }])
      } catch (err) {
        throw kafkaError(`could not record the removal of letter ${message.id} of "${topic}" (group "${groupId}")`, err, deps.secrets)
      }
      p.committed = ranges.committed
      p.removed = ranges.removed
    },
    redeliver: async (message, group) => {
      const err = await deps.send({ ...message, topic: groupRetryTopic(message.topic, group) })
      if (err !== undefined) throw err
    },
    close: async () => {
      await consumer?.disconnect().catch(() => {})
    }
  }
}

/** Each partition's committed offset and removed ranges (from the bookkeeping group), and its end now. */
async function startingPoints (deps: KafkaDeadLetterDeps, topic: string, groupId: string): Promise<Map<number, PartitionState>> {
  const parts = new Map<number, PartitionState>()
  let exists: boolean
  try {
    exists = (await deps.admin.listTopics()).includes(topic)
  } catch (err) {
    throw kafkaError(`could not list the topics at ${deps.address}`, err, deps.secrets)
  }
  if (!exists) {
    throw new BrokerError(`there is no dead-letter topic "${topic}" on Kafka at ${deps.address}: check the topic and group (Herald creates it when the group first subscribes)`, { code: ErrorCode.UnknownTopic, retriable: false })
  }
  try {
    const ends = await deps.admin.fetchTopicOffsets(topic)
    const [marks] = await deps.admin.fetchOffsets({ groupId, topics: [topic] })
    for (const { partition, offset, low } of ends) {
      const mark = marks?.partitions.find(m => m.partition === partition)
      const committed = Math.max(Number(mark?.offset ?? -1), Number(low))
      const removed = mark === undefined ? [] : decodeMark(mark.metadata, Number(mark.offset))?.acked ?? []
      parts.set(partition, { committed, removed, next: committed, end: Number(offset) })
    }
  } catch (err) {
    throw kafkaError(`could not read the offsets of the dead-letter topic "${topic}" at ${deps.address}`, err, deps.secrets)
  }
  return parts
}

function within (p: PartitionState, offset: number): boolean {
  return offset < p.committed || p.removed.some(([from, to]) => offset >= from && offset <= to)
}

/** The partition's commit once `offset` is removed too: the offset moves up over every removed letter at its foot. */
export function addRemoved (p: Pick<PartitionState, 'committed' | 'removed'>, offset: number): { committed: number, removed: Array<[number, number]> } {
  const removed: Array<[number, number]> = [...p.removed, [offset, offset] as [number, number]].sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const r of removed) {
    const last = merged[merged.length - 1]
    if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1])
    else merged.push([r[0], r[1]])
  }
  let committed = p.committed
  while (merged.length > 0 && merged[0]![0] <= committed) committed = Math.max(committed, merged.shift()![1] + 1)
  return { committed, removed: merged }
}
