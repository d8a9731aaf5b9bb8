/**
 * The small contract every broker adapter implements. The core (producer, runner) speaks
 * only this; a client library (kafkajs, amqplib, ioredis) is imported only inside its
 * adapter's folder, and adapters are loaded lazily.
 *
 * Delivery model, the same on every broker:
 * - A group is a set of subscriptions sharing the work; different groups each get every
 *   message. A new group starts from the earliest retained message.
 * - The adapter hands messages to `onDelivery` in log order (per partition, stream or
 *   queue). It may hand over several before earlier ones settle, never more than
 *   `maxInFlight` unsettled at once for one subscription.
 * - The adapter never acknowledges by itself: a message is settled only by `ack()`
 *   (handled or dead-lettered: commit, ack, XACK) or by `release()` (given back unhandled,
 *   to be delivered again to the same group). A message neither acked nor released when
 *   the process dies is delivered again.
 */
import type { Logger } from '../logger.js'

export type BrokerKind = 'kafka' | 'rabbitmq' | 'redis' | 'memory'

export const BROKER_KINDS: readonly BrokerKind[] = ['kafka', 'rabbitmq', 'redis', 'memory']

/** One message to send. `value` is the body as it goes on the wire. */
export interface OutgoingMessage {
  topic: string
  value: Buffer
  key?: string | undefined
  headers: Record<string, string>
}

/** One received message, and the means to settle it. */
export interface Delivery {
  readonly topic: string
  readonly value: Buffer
  readonly key: string | undefined
  /** Header values decoded to strings. */
  readonly headers: Record<string, string>
  /** How many times this message was delivered before this delivery, as far as the broker knows (0: first). */
  readonly redeliveries: number
  /**
   * False when `redeliveries` is only a hint, not a count (a RabbitMQ classic queue's
   * `redelivered` flag, set by a release too): Herald then never dead-letters by it.
   */
  readonly redeliveriesCounted?: boolean
  /** The broker's name for the message's position, for logs: `topic/partition@offset`, a stream entry id, a delivery tag. */
  readonly id: string
  /**
   * Settles the message as done (handled, skipped or dead-lettered). Resolves once the
   * broker took it, or once it is certain the message will be delivered again anyway (a
   * Kafka partition that moved to another member): a settled message is never lost, at
   * worst seen twice.
   */
  ack(): Promise<void>
  /**
   * Gives the message back unhandled (a shutdown caught it waiting): it will be delivered
   * again to the group. The adapter must not let a later ack skip over it (Kafka: never
   * commit past a released offset).
   */
  release(): Promise<void>
  /** Called now and then while a message waits a long time (a retry delay), so the consumer keeps its place in the group. */
  keepAlive?(): Promise<void>
  /**
   * `true` while the message waits for a retry, `false` when it runs again: a waiting
   * message does not count against `maxInFlight` (it would hold the room healthy messages
   * need), only against `maxWaiting`. Settling ends the wait too.
   */
  waiting?(on: boolean): void
  /**
   * The consumer keeps this message's order from now on (a batch handler took it into a
   * batch): an adapter that hands a key's messages over one at a time may hand over the next
   * message of its key before this one is settled.
   */
  handOn?(): void
}

export interface SubscribeOptions {
  /** The consumer group (Kafka group id, RabbitMQ queue per topic, Redis stream group). */
  group: string
  topics: string[]
  /** The most messages handed over and not yet settled, for this subscription, not counting those marked `waiting`. */
  maxInFlight: number
  /**
   * The most messages marked `waiting` at once (the runner never marks more). An adapter
   * whose broker limits unsettled messages by itself (RabbitMQ's prefetch) adds it to that limit.
   */
  maxWaiting?: number
  /**
   * Dead-letter destinations this group may send to. The adapter makes them exist before
   * `subscribe` resolves, so a dead letter is kept even when nobody consumes it yet.
   */
  deadLetterTopics: string[]
}

/**
 * Called for each message. The returned promise resolves once the message is settled
 * (acked or released); it never rejects. An adapter whose log is ordered per partition
 * (Kafka) hands over a partition's next message only once the previous one is settled,
 * without blocking its other partitions meanwhile; others need not wait.
 */
export type DeliveryHandler = (delivery: Delivery) => Promise<void>

export interface Subscription {
  /** Stops fetching new messages. Messages already handed over can still be settled. */
  pause(): Promise<void>
  /** Stops fetching, waits until every handed-over message is settled, then leaves the group. */
  close(): Promise<void>
}

export interface BrokerHealth {
  ok: boolean
  /** The adapter's `kind`. */
  broker: BrokerKind | (string & {})
  /** A short, secret-free description: the address, or what is wrong. */
  detail: string
}

/** One topic's lag for one group, in messages. */
export interface TopicLag {
  topic: string
  messages: number
}

export interface Broker {
  /** The built-in adapters' kinds, or the name of your own adapter (`"nats"`), for logs and health. */
  readonly kind: BrokerKind | (string & {})
  /** Connects; rejects with a `BrokerError` that names the broker and its (password-masked) address. Idempotent. */
  connect(): Promise<void>
  /**
   * Sends a batch. Resolves with one entry per message, in order: `undefined` once the
   * broker acknowledged (persisted) it, or the error that stopped it. Never resolves
   * `undefined` for a message the broker did not take. Optional `onAcknowledged(i)`: called
   * as soon as message `i` is acknowledged, when the broker knows before the whole batch is
   * (the producer answers its send then, keeping the order of sends).
   */
  publish(messages: OutgoingMessage[], onAcknowledged?: (index: number) => void): Promise<Array<Error | undefined>>
  /**
   * Optional: how many publish() calls the producer may have unanswered at once (a batch
   * each). publish() calls made while others are unanswered go out in call order; default 1.
   */
  readonly maxPublishesInFlight?: number
  /** Makes a group consume the topics. Resolves once it is ready to receive (Kafka: the group has its partitions). */
  subscribe(options: SubscribeOptions, onDelivery: DeliveryHandler): Promise<Subscription>
  health(): Promise<BrokerHealth>
  /**
   * Optional: how many messages of each topic the group has not settled yet (Kafka: end
   * offsets minus committed offsets; Redis: the group's lag plus its pending entries;
   * RabbitMQ: the messages ready in the group's queue, not those delivered and unacknowledged;
   * memory: not delivered + pending + released). Read at metrics scrape time; a topic the broker
   * cannot tell about is left out.
   */
  lag?(group: string, topics: readonly string[]): Promise<TopicLag[]>
  /**
   * Optional: reads a dead-letter destination without consuming it, for
   * `messaging.deadLetters()` (lib/dead-letters/). Without it, inspecting and replaying
   * dead letters fails with `HERALD_UNSUPPORTED`.
   */
  deadLetters?(destination: string): Promise<DeadLetterCursor>
  /**
   * Optional: stores a retry of `message` (its `topic` is the original topic) for `group`
   * only, to be delivered again to that group's subscriptions once `dueAt` (epoch ms) has
   * passed, never before; resolves once the broker has stored it (the runner acknowledges
   * the original only then). Without it, every retry waits in the process.
   */
  scheduleRetry?(group: string, message: OutgoingMessage, dueAt: number): Promise<void>
  /** Closes every connection. Subscriptions should be closed first; publishes in progress fail. */
  close(): Promise<void>
}

/** A message as stored in a destination, read without settling it. */
export interface StoredMessage {
  /** The broker's position: Kafka `partition:offset`, a Redis stream entry id, RabbitMQ the message's place in this reading (1, 2, …), memory its sequence number. */
  readonly id: string
  readonly value: Buffer
  readonly key: string | undefined
  readonly headers: Record<string, string>
}

/** One pass over a dead-letter destination, oldest first, over the letters it held when the pass began (one dead-lettered again meanwhile is not read twice). */
export interface DeadLetterCursor {
  /** How many letters the pass has to read (those there when it began), when the broker tells. */
  readonly total?: number
  /** The next messages, up to `limit`, after those this cursor returned already; `[]` at the end. Settles nothing. */
  read(limit: number): Promise<StoredMessage[]>
  /** Removes a message this cursor read, for good (RabbitMQ: ack; Redis: XDEL; memory: dropped). Resolves once the broker did. */
  remove(message: StoredMessage): Promise<void>
  /**
   * Optional: stores `message` (its `topic` is the original topic) for `group` only, where
   * that group's consumer reads it and no other group does; resolves once the broker has it.
   */
  redeliver?(message: OutgoingMessage, group: string): Promise<void>
  /** Ends the pass: what was read and not removed stays where it was. */
  close(): Promise<void>
}

/** What the core gives an adapter besides its own settings. */
export interface BrokerDeps {
  /** Namespaced logger (`{ broker: kind }` bound). Log connection trouble once per outage, never a password. */
  logger: Logger
  /** The service name, used as the client id / connection name. */
  clientId: string
}

/**
 * Headers of a retry stored in the broker (`durableRetryAfter`). When it comes back, the
 * runner counts attempts on from `herald-attempt`, so `maxRetries` spans the retries that
 * waited in the process and those the broker kept. An adapter with `scheduleRetry` holds a
 * retry back until `retryAt` where the broker cannot delay it by itself (Kafka).
 */
export const RETRY_HEADERS = {
  /** The attempt the stored retry will be (2 for the first retry). */
  attempt: 'herald-attempt',
  /** Why the previous attempt failed (redacted, one line, at most 1000 characters). */
  reason: 'herald-retry-reason',
  /** When it is due, ISO-8601. */
  retryAt: 'herald-retry-at'
} as const
