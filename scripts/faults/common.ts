// What the harness (run.ts) and its child processes (service.ts, worker.ts) agree on: the
// settings handed to a child in one environment variable, the files the worker writes, and
// the poison messages.
import type { MessagingOptions } from '../../lib/index.js'

export type HarnessBroker = 'kafka' | 'rabbitmq' | 'redis'

/** The environment variable that carries a child's settings, as JSON. */
export const SETTINGS_ENV = 'HERALD_FAULTS_SETTINGS'

export interface ChildSettings {
  broker: HarnessBroker
  /** Connection options for this child (the worker's may go through the TCP proxy). */
  connection: Pick<MessagingOptions, 'url' | 'bootstrapServers'>
  /** The topic the service publishes to and the worker consumes. */
  topic: string
  /** The worker's group for the topic. */
  group: string
  /** The group of the handler that reads the dead-letter topic. */
  deadLetterGroup: string
  /** Service only: `{ dir, maxBytes }` of the outbox. */
  outbox?: { dir: string, maxBytes: number }
  /** Service only: the port to listen on (0: a free one). */
  port?: number
  /** Service only: how long a publish waits for the broker before the outbox takes it (or a 503). */
  publishTimeout?: number
  /** Worker only: one line per handled event is appended here. */
  handledFile?: string
  /** Worker only: one JSON line per dead letter read by the dead-letter handler. */
  deadFile?: string
  /** Worker only: messages handled at once. */
  concurrency?: number
}

/** The dead-letter topic of the worker's group, as Herald names it. */
export function deadLetterTopicOf (settings: Pick<ChildSettings, 'topic' | 'group'>): string {
  return `${settings.topic}.${settings.group}.dlq`
}

/** Per-broker client options both children use: short session / claim times so faults resolve in seconds. */
export function brokerTuning (broker: HarnessBroker): MessagingOptions {
  switch (broker) {
    case 'kafka':
      // A member silent for 6 s (the broker's minimum) is dropped from its group; the SIGSTOP
      // fault outlasts that. Three partitions, so keys spread and order is per partition.
      return { kafka: { numPartitions: 3, consumer: { sessionTimeout: 6_000, heartbeatInterval: 1_000, rebalanceTimeout: 10_000 } } }
    case 'redis':
      // Entries pending with a SIGKILLed worker are claimed by the next one after 3 s.
      return { redis: { claimIdleMs: 3_000 } }
    case 'rabbitmq':
      return { rabbitmq: { heartbeat: 5 } }
  }
}

/** The header a poison message carries, naming which one it is (headers survive dead-lettering). */
export const POISON_HEADER = 'faults-poison'

export interface PoisonMessage {
  name: string
  value: Buffer
  /** What the dead-letter reason must mention (case-insensitive) for the message to count as accounted for. */
  expect: RegExp
}

/** The marker the worker's handler rejects (a retriable error, so it is dead-lettered after its retries). */
export const REJECT_MARKER = 'reject-me'

/** The handful of poison messages the harness sends with a raw client. */
export function poisonMessages (runId: string): PoisonMessage[] {
  const envelope = (data: unknown): Buffer => Buffer.from(JSON.stringify({
    id: `poison-${runId}-${Math.random().toString(16).slice(2, 10)}`,
    name: 'order.placed',
    data,
    timestamp: new Date().toISOString(),
    source: 'faults-raw-client'
  }))
  return [
    { name: 'not-json', value: Buffer.from('order 42: {this is not JSON'), expect: /not JSON/i },
    { name: 'not-utf8', value: Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xff, 0xfe]), expect: /UTF-8/i },
    { name: 'empty', value: Buffer.alloc(0), expect: /empty/i },
    { name: 'schema-invalid', value: envelope({ requestId: 42, n: 'forty-two' }), expect: /schema validation failed/i },
    { name: 'handler-rejected', value: envelope({ requestId: `poison-${runId}`, n: -1, marker: REJECT_MARKER }), expect: /rejected by the handler/i }
  ]
}

/** A line of the handled file: `requestId eventId attempt pid handledAtMs`. */
export interface HandledRecord {
  requestId: string
  eventId: string
  attempt: number
  pid: number
  at: number
}

export function formatHandled (r: HandledRecord): string {
  return `${r.requestId} ${r.eventId} ${r.attempt} ${r.pid} ${r.at}\n`
}

export function parseHandled (line: string): HandledRecord | undefined {
  const [requestId, eventId, attempt, pid, at] = line.trim().split(' ')
  if (requestId === undefined || eventId === undefined || at === undefined) return undefined
  return { requestId, eventId, attempt: Number(attempt), pid: Number(pid), at: Number(at) }
}

/** A line of the dead file, written by the worker's dead-letter handler. */
export interface DeadRecord {
  poison: string | undefined
  reason: string | undefined
  requestId: string | undefined
  pid: number
}
