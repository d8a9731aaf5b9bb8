import type { Broker, BrokerDeps } from '../broker.js'
import { KafkaBroker } from './kafka-broker.js'
import type { KafkaSettings } from './kafka-config.js'

/** The adapter's shape, the same in every folder under lib/brokers: kind, settings resolver, factory. */
export const kind = 'kafka' as const
export { resolveKafkaSettings as resolveSettings } from './kafka-config.js'

export { KafkaBroker } from './kafka-broker.js'

export function createBroker (settings: KafkaSettings, deps: BrokerDeps): Broker {
  return new KafkaBroker(settings, deps)
}
