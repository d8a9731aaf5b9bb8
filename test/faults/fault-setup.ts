import amqplib from 'amqplib'
import { Kafka, logLevel } from 'kafkajs'
import { Redis } from 'ioredis'
import type { MessagingOptions, Messaging } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { brokerOptions, eventually } from '../helpers.js'
import type { WorkerConfig, WorkerLine } from './worker.js'
import type { WorkerProcess } from './worker-process.js'

/**
 * Messaging options a fault-test process uses on `kind`, without a logger. On Kafka a
 * member that dies is dropped from its group after 6 s (the broker's minimum) instead of
 * 30, so the next member gets its partitions quickly; on Redis `claimIdleMs` is 1 s.
 */
export function faultOptions (kind: BrokerKind, extra: MessagingOptions = {}): MessagingOptions {
  const { logger: _logger, ...base } = brokerOptions(kind)
  const options: MessagingOptions = { ...base, publishTimeout: 30_000, ...extra }
  if (kind === 'kafka') options.kafka = { ...options.kafka, consumer: { sessionTimeout: 6_000, heartbeatInterval: 1_000, ...options.kafka?.consumer } }
  if (kind === 'redis') options.redis = { ...options.redis, claimIdleMs: 1_000, ...extra.redis }
  return options
}

export function workerConfig (kind: BrokerKind, topic: string, group: string, extra: Partial<WorkerConfig> = {}): WorkerConfig {
  return {
    messaging: faultOptions(kind, { source: `herald-faults-${process.pid}` }),
    topic,
    group,
    delayMs: 20,
    concurrency: 5,
    shutdownTimeout: 10_000,
    ...extra
  }
}

/** Publishes `count` events `{ n }` (n = from, from+1, …) and returns their ids by n. */
export async function publishJobs (messaging: Messaging, topic: string, count: number, from = 0): Promise<Map<number, string>> {
  const sent = await Promise.all(Array.from({ length: count }, async (_v, i) => await messaging.publishEvent('fault.job', { n: from + i }, { topic })))
  return new Map(sent.map((event, i) => [from + i, event.id]))
}

/**
 * Resolves once `group` has nothing left on `topics`: no message not yet delivered, pending
 * or uncommitted (the broker's lag is 0), so nothing handled can still come back to it. A
 * condition to wait for, where a pause would guess how long a redelivery takes.
 */
export async function drained (messaging: Messaging, group: string, topics: string[], timeout = 30_000): Promise<void> {
  const broker = await messaging.broker()
  if (broker.lag === undefined) throw new Error(`the ${broker.kind} broker cannot tell a group's lag`)
  const lag = broker.lag.bind(broker)
  await eventually(async () => (await lag(group, topics)).every(l => l.messages === 0), `group ${group} to have nothing left (lag 0)`, timeout, 100)
}

/** How many messages sit in the dead-letter destination of `topic` for `group`. */
export async function deadLetterCount (kind: BrokerKind, topic: string, group: string): Promise<number> {
  const options = brokerOptions(kind)
  const dlq = `${topic}.${group}.dlq`
  switch (kind) {
    case 'memory':
      return 0
    case 'kafka': {
      const admin = new Kafka({ brokers: [String(options.bootstrapServers)], logLevel: logLevel.NOTHING }).admin()
      await admin.connect()
      try {
        if (!(await admin.listTopics()).includes(dlq)) return 0
        const offsets = await admin.fetchTopicOffsets(dlq)
        return offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0)
      } finally {
        await admin.disconnect()
      }
    }
    case 'rabbitmq': {
      const connection = await amqplib.connect(String(options.url))
      try {
        const channel = await connection.createChannel()
        channel.on('error', () => {})
        try {
          return (await channel.checkQueue(dlq)).messageCount
        } catch {
          return 0
        }
      } finally {
        await connection.close().catch(() => {})
      }
    }
    case 'redis': {
      const redis = new Redis(String(options.url), { lazyConnect: true })
      await redis.connect()
      try {
        return await redis.xlen(`${options.redis?.prefix ?? ''}${dlq}`)
      } finally {
        redis.disconnect()
      }
    }
  }
}

/** RabbitMQ queues a fault test's group creates, for `cleanUpRun`. */
export function queuesOf (topic: string, group: string): string[] {
  return [`${topic}.${group}`, `${topic}.${group}.dlq`]
}

/** One member's custody of a message: from its first attempt's start to its last attempt's end. */
export interface Custody {
  id: string
  pid: number
  from: number
  to: number
  attempts: number[]
  finished: boolean
}

/** Per message and member, when it held the message (handler attempts and the waits between them). */
export function custodies (workers: Array<{ lines: WorkerLine[] }>): Custody[] {
  const byKey = new Map<string, Custody>()
  for (const w of workers) {
    for (const l of w.lines) {
      if (l.id === undefined || !['start', 'done', 'fail', 'aborted'].includes(l.ev)) continue
      const key = `${l.id}|${l.pid}`
      let c = byKey.get(key)
      if (c === undefined) byKey.set(key, c = { id: l.id, pid: l.pid, from: l.t, to: l.t, attempts: [], finished: false })
      c.from = Math.min(c.from, l.t)
      c.to = Math.max(c.to, l.t)
      if (l.ev === 'start') c.attempts.push(l.attempt ?? 0)
      if (l.ev === 'done') c.finished = true
    }
  }
  return [...byKey.values()]
}

/** Pairs of members that held the same message at the same time. */
export function overlaps (all: Custody[]): Array<[Custody, Custody]> {
  const byId = new Map<string, Custody[]>()
  for (const c of all) byId.set(c.id, [...(byId.get(c.id) ?? []), c])
  const out: Array<[Custody, Custody]> = []
  for (const list of byId.values()) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!
        const b = list[j]!
        if (a.from <= b.to && b.from <= a.to) out.push([a, b])
      }
    }
  }
  return out
}

/** Ids finished by any of the workers, and how many were finished more than once. */
export function tally (workers: WorkerProcess[]): { handled: Set<string>, duplicates: number } {
  const counts = new Map<string, number>()
  for (const w of workers) for (const l of w.of('done')) counts.set(l.id!, (counts.get(l.id!) ?? 0) + 1)
  return { handled: new Set(counts.keys()), duplicates: [...counts.values()].filter(c => c > 1).length }
}
