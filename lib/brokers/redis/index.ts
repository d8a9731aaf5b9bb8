import type { Broker, BrokerDeps } from '../broker.js'
import { RedisBroker } from './redis-broker.js'
import type { RedisSettings } from './redis-config.js'

export { RedisBroker } from './redis-broker.js'

export function createBroker (settings: RedisSettings, deps: BrokerDeps): Broker {
  return new RedisBroker(settings, deps)
}
