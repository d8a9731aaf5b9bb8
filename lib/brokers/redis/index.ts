import type { Broker, BrokerDeps } from '../broker.js'
import { RedisBroker } from './redis-broker.js'
import type { RedisSettings } from './redis-config.js'

/** The adapter's shape, the same in every folder under lib/brokers: kind, settings resolver, factory. */
export const kind = 'redis' as const
export { resolveRedisSettings as resolveSettings } from './redis-config.js'

export { RedisBroker, NOT_A_STREAM } from './redis-broker.js'

/**
 * The Redis Streams adapter, loaded lazily by `createMessaging({ broker: 'redis' })`, so
 * ioredis loads only for Redis users.
 *
 * @example
 * ```ts
 * const broker = createBroker(resolveSettings('redis://localhost:6379', process.env, {}), { logger, clientId: 'orders' })
 * await broker.connect()
 * ```
 */
export function createBroker (settings: RedisSettings, deps: BrokerDeps): Broker {
  return new RedisBroker(settings, deps)
}
