import type { AmqpSocketOptions } from '../client-types.js'
import { ConfigError } from '../../errors.js'
import { checkKnownKeys, checkObject, checkPositiveInt, resolveBrokerUrl, type BrokerUrlSource, type UrlBrokerSettings } from '../config-checks.js'

/** The queue types Herald can declare its queues as. */
export type RabbitMqQueueType = 'classic' | 'quorum'

/** RabbitMQ options, under `rabbitmq` in the messaging options. */
export interface RabbitMqOptions {
  /** The durable topic exchange events are published to. Default `herald`. */
  exchange?: string
  /**
   * Socket options passed to `amqplib.connect()` (TLS: `ca`, `cert`, `key`, `passphrase`,
   * `servername`, …; `credentials` for EXTERNAL auth; `clientProperties`). `timeout` is the
   * connect timeout in ms, default 10000. `recovery` is refused: Herald reconnects and
   * resubscribes by itself.
   */
  socketOptions?: AmqpSocketOptions
  /** Heartbeat interval in seconds, passed to the connection (`0` turns heartbeats off). Default: the server's (60). */
  heartbeat?: number
  /**
   * The type of every queue Herald declares (group queues and dead-letter queues), sent as
   * `x-queue-type`. Default: none sent, so the server's default applies (classic, or the
   * virtual host's default queue type). `quorum` replicates the queue in a cluster and
   * counts redeliveries (`x-delivery-count`). A queue keeps the type it was created with:
   * to change it, drain and delete the queue.
   */
  queueType?: RabbitMqQueueType
}

/** `connectTimeout` applies when `socketOptions.timeout` is not given. */
export interface RabbitMqSettings extends UrlBrokerSettings<RabbitMqOptions> {
  exchange: string
}

const RABBITMQ_OPTION_KEYS: ReadonlyArray<keyof RabbitMqOptions> = ['exchange', 'socketOptions', 'heartbeat', 'queueType']

/** The connect timeout when `socketOptions.timeout` is not given, in ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000

const URL_SOURCE: BrokerUrlSource = {
  envVar: 'RABBITMQ_URL',
  fallback: 'amqp://localhost:5672',
  schemes: ['amqp', 'amqps'],
  example: 'amqp://user:password@localhost:5672/vhost (or amqps:// for TLS)'
}

/** Validates the RabbitMQ options; throws a `ConfigError` naming the option and the fix. */
export function resolveRabbitMqSettings (url: string | undefined, env: NodeJS.ProcessEnv, options: RabbitMqOptions | undefined): RabbitMqSettings {
  const { value } = resolveBrokerUrl(url, env, URL_SOURCE)
  checkKnownKeys('rabbitmq', checkObject('rabbitmq', options), RABBITMQ_OPTION_KEYS)
  const exchange = options?.exchange ?? 'herald'
  if (typeof exchange !== 'string' || exchange === '' || exchange.startsWith('amq.')) {
    throw new ConfigError('rabbitmq.exchange', `"${String(exchange)}" cannot be used; name a topic exchange of your own, e.g. "herald" (names starting with "amq." are reserved)`)
  }
  if (Buffer.byteLength(exchange) > 255) {
    throw new ConfigError('rabbitmq.exchange', `"${exchange.slice(0, 40)}…" is longer than the 255 bytes RabbitMQ allows in a name; pick a shorter one, e.g. "herald"`)
  }
  if (options?.heartbeat !== undefined) checkPositiveInt('rabbitmq.heartbeat', options.heartbeat, { min: 0 })
  const socketOptions = checkObject('rabbitmq.socketOptions', options?.socketOptions)
  if ('recovery' in socketOptions) {
    throw new ConfigError('rabbitmq.socketOptions.recovery', 'Herald reconnects and resubscribes by itself; remove this option')
  }
  if (socketOptions.timeout !== undefined) checkPositiveInt('rabbitmq.socketOptions.timeout', socketOptions.timeout)
  const queueType = options?.queueType
  if (queueType !== undefined && queueType !== 'classic' && queueType !== 'quorum') {
    throw new ConfigError('rabbitmq.queueType', `must be "classic" or "quorum", got ${JSON.stringify(queueType)}; leave it unset to use the server's default`)
  }
  return { url: value, exchange, options: options ?? {} }
}
