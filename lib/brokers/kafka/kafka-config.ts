import type { KafkaClientConfig, KafkaConsumerConfig, KafkaProducerConfig, KafkaRetryOptions } from '../client-types.js'
import { ConfigError } from '../../errors.js'
import { checkKnownKeys, checkObject, checkPositiveInt } from '../config-checks.js'

/** Kafka options, under `kafka` in the messaging options. */
export interface KafkaOptions {
  /** Passed to `new Kafka()`: `ssl`, `sasl`, `connectionTimeout`, `retry`, … (`brokers` and `clientId` come from Herald's options). */
  client?: Omit<KafkaClientConfig, 'brokers' | 'clientId'>
  /**
   * Passed to `kafka.producer()`. Herald sets `idempotent: true` (with
   * `maxInFlightRequests: 1`, as kafkajs's idempotence needs) unless given, sends with
   * `acks: -1` (every in-sync replica), and partitions by key like the Java client.
   */
  producer?: KafkaProducerConfig
  /**
   * Passed to `kafka.consumer()` (`groupId` comes from the handler). Herald's defaults:
   * `sessionTimeout` 30000, `heartbeatInterval` 3000, `rebalanceTimeout` 60000,
   * `maxWaitTimeInMs` 500, `retry.maxRetryTime` 5000 (a consumer that lost Kafka tries
   * again at least every 5 s), and `partitionAssigners` Herald's own, which never moves a
   * partition away from a member still handling one of its messages (then kafkajs's round
   * robin, for groups shared with other clients); it always reads a new group from the
   * earliest message and commits only what was handled (`autoCommit` is off).
   */
  consumer?: Omit<KafkaConsumerConfig, 'groupId'>
  /** Partitions of the topics Herald creates (its subscribed and dead-letter topics). Default 3. */
  numPartitions?: number
  /** Replication factor of the topics Herald creates. Default: the broker's default. */
  replicationFactor?: number
}

export interface KafkaSettings {
  brokers: string[]
  clientId: string
  options: KafkaOptions
  numPartitions: number
  /** How long the first connection may take, in ms (the messaging option `connectTimeout`). */
  connectTimeout?: number
}

const KAFKA_OPTION_KEYS: ReadonlyArray<keyof KafkaOptions> = ['client', 'producer', 'consumer', 'numPartitions', 'replicationFactor']

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/

/** Validates the Kafka options; throws a `ConfigError` naming the option and the fix. */
export function resolveKafkaSettings (bootstrapServers: string | string[] | undefined, env: NodeJS.ProcessEnv, clientId: string, options: KafkaOptions | undefined): KafkaSettings {
  const option = bootstrapServers !== undefined ? 'bootstrapServers' : 'KAFKA_BOOTSTRAP_SERVERS'
  const raw = bootstrapServers ?? env.KAFKA_BOOTSTRAP_SERVERS ?? 'localhost:9092'
  const list = (Array.isArray(raw) ? raw : String(raw).split(',')).map(s => String(s).trim()).filter(s => s !== '')
  if (list.length === 0) {
    throw new ConfigError(option, 'is empty; give at least one Kafka broker as "host:port", e.g. "localhost:9092" (several separated by commas)')
  }
  for (const server of list) {
    const m = HOST_PORT.exec(server)
    const port = m === null ? NaN : Number(m[2])
    if (m === null || port < 1 || port > 65535) {
      throw new ConfigError(option, `"${server}" is not "host:port"; give Kafka brokers as e.g. "localhost:9092" (no scheme, several separated by commas)`)
    }
  }
  checkKnownKeys('kafka', checkObject('kafka', options), KAFKA_OPTION_KEYS)
  const numPartitions = options?.numPartitions === undefined ? 3 : checkPositiveInt('kafka.numPartitions', options.numPartitions)
  if (options?.replicationFactor !== undefined) checkPositiveInt('kafka.replicationFactor', options.replicationFactor)
  checkObject('kafka.client', options?.client)
  checkObject('kafka.producer', options?.producer)
  checkObject('kafka.consumer', options?.consumer)
  checkKafkaClientOptions(options ?? {})
  return { brokers: list, clientId, options: options ?? {}, numPartitions }
}

/**
 * Consumer defaults (ms), each overridable in `kafka.consumer`. A member heartbeats every
 * 3 s and is dropped after 30 s of silence; heartbeats go on while a message waits for a
 * retry, because that message's partition is paused instead of blocking kafkajs.
 * `maxWaitTimeInMs` is how long an idle fetch waits at the broker, so also how soon a
 * partition resumed after a slow message is fetched again (Kafka's Java client waits
 * 500 ms; kafkajs's default of 5 s would hold such a partition up to 5 s).
 */
export const KAFKA_CONSUMER_DEFAULTS = {
  sessionTimeout: 30_000,
  heartbeatInterval: 3_000,
  rebalanceTimeout: 60_000,
  maxWaitTimeInMs: 500
} as const

/**
 * The consumer's retry options: kafkajs's (from `kafka.client.retry`, then
 * `kafka.consumer.retry`), with waits capped at 5 s unless given. A consumer that cannot
 * reach Kafka gives up after its retries, "crashes", and kafkajs starts it again after
 * waiting as long as its last retry did: with kafkajs's 30 s cap, up to half a minute after
 * Kafka is back; with this one, 5 s at most.
 */
export function kafkaConsumerRetry (options: KafkaOptions): KafkaRetryOptions & { restartOnFailure?: (err: Error) => Promise<boolean> } {
  return { maxRetryTime: 5_000, ...options.client?.retry, ...options.consumer?.retry }
}

/** Combinations kafkajs would reject only once a producer or consumer is created. */
function checkKafkaClientOptions (options: KafkaOptions): void {
  const idempotent = options.producer?.idempotent ?? true
  const retries = options.producer?.retry?.retries ?? options.client?.retry?.retries
  if (idempotent && retries !== undefined && retries < 1) {
    const option = options.producer?.retry?.retries !== undefined ? 'kafka.producer.retry.retries' : 'kafka.client.retry.retries'
    throw new ConfigError(option, `is ${retries}, but Herald's idempotent Kafka producer needs at least 1 retry; set kafka.producer.retry.retries to 1 or more (or kafka.producer.idempotent to false)`)
  }
  const sessionTimeout = options.consumer?.sessionTimeout ?? KAFKA_CONSUMER_DEFAULTS.sessionTimeout
  const heartbeatInterval = options.consumer?.heartbeatInterval ?? KAFKA_CONSUMER_DEFAULTS.heartbeatInterval
  if (heartbeatInterval >= sessionTimeout) {
    throw new ConfigError('kafka.consumer.heartbeatInterval', `(${heartbeatInterval} ms) must be lower than sessionTimeout (${sessionTimeout} ms); set it to about a third of sessionTimeout`)
  }
}
