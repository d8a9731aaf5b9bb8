import { ConfigError } from '../../errors.js'
import { checkObject, checkPositiveInt, parseBrokerUrl } from '../config-checks.js'

/** RabbitMQ options, under `rabbitmq` in the messaging options. */
export interface RabbitMqOptions {
  /** The durable topic exchange events are published to. Default `herald`. */
  exchange?: string
  /** Socket options passed to `amqplib.connect()` (TLS: `ca`, `cert`, `key`, `servername`, …). */
  socketOptions?: Record<string, unknown>
  /** Heartbeat interval in seconds, passed to the connection. */
  heartbeat?: number
}

export interface RabbitMqSettings {
  url: string
  exchange: string
  options: RabbitMqOptions
}

const EXAMPLE = 'amqp://user:password@localhost:5672/vhost (or amqps:// for TLS)'

/** Validates the RabbitMQ options; throws a `ConfigError` naming the option and the fix. */
export function resolveRabbitMqSettings (url: string | undefined, env: NodeJS.ProcessEnv, options: RabbitMqOptions | undefined): RabbitMqSettings {
  const option = url !== undefined ? 'url' : 'RABBITMQ_URL'
  const value = url ?? env.RABBITMQ_URL ?? 'amqp://localhost:5672'
  parseBrokerUrl(option, value, ['amqp', 'amqps'], EXAMPLE)
  checkObject('rabbitmq', options)
  const exchange = options?.exchange ?? 'herald'
  if (typeof exchange !== 'string' || exchange === '' || exchange.startsWith('amq.')) {
    throw new ConfigError('rabbitmq.exchange', `"${String(exchange)}" cannot be used; name a topic exchange of your own, e.g. "herald" (names starting with "amq." are reserved)`)
  }
  if (options?.heartbeat !== undefined) checkPositiveInt('rabbitmq.heartbeat', options.heartbeat, { min: 0 })
  return { url: value, exchange, options: options ?? {} }
}
