import type { Broker, BrokerDeps } from '../broker.js'
import { RabbitMqBroker } from './rabbitmq-broker.js'
import type { RabbitMqSettings } from './rabbitmq-config.js'

/** The adapter's shape, the same in every folder under lib/brokers: kind, settings resolver, factory. */
export const kind = 'rabbitmq' as const
export { resolveRabbitMqSettings as resolveSettings } from './rabbitmq-config.js'

export { RabbitMqBroker } from './rabbitmq-broker.js'
export { resolveRabbitMqSettings, type RabbitMqOptions, type RabbitMqSettings } from './rabbitmq-config.js'
export { groupQueueName } from './rabbitmq-names.js'

/**
 * The RabbitMQ adapter. Loaded lazily by `createMessaging`, so amqplib loads only for RabbitMQ users.
 *
 * @example
 * const settings = resolveRabbitMqSettings('amqp://guest:guest@localhost:5672', process.env, { exchange: 'herald' })
 * const broker = createBroker(settings, { logger: createDefaultLogger(), clientId: 'orders-service' })
 * await broker.connect()
 */
export function createBroker (settings: RabbitMqSettings, deps: BrokerDeps): Broker {
  return new RabbitMqBroker(settings, deps)
}
