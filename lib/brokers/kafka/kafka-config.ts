import type { KafkaConfig, ProducerConfig, ConsumerConfig } from 'kafkajs'
import { ConfigError } from '../../errors.js'
import { checkObject, checkPositiveInt } from '../config-checks.js'

/** Kafka options, under `kafka` in the messaging options. */
export interface KafkaOptions {
  /** Passed to `new Kafka()`: `ssl`, `sasl`, `connectionTimeout`, `retry`, … (`brokers` and `clientId` come from Herald's options). */
  client?: Omit<KafkaConfig, 'brokers' | 'clientId'>
  /** Passed to `kafka.producer()`. Herald sets `idempotent: true` and `acks: -1` unless given. */
  producer?: ProducerConfig
  /** Passed to `kafka.consumer()` (`groupId` comes from the handler). */
  consumer?: Omit<ConsumerConfig, 'groupId'>
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
}

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
  checkObject('kafka', options)
  const numPartitions = options?.numPartitions === undefined ? 3 : checkPositiveInt('kafka.numPartitions', options.numPartitions)
  if (options?.replicationFactor !== undefined) checkPositiveInt('kafka.replicationFactor', options.replicationFactor)
  return { brokers: list, clientId, options: options ?? {}, numPartitions }
}
