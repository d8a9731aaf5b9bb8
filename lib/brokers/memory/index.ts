import type { Broker, BrokerDeps } from '../broker.js'
import { MemoryBroker } from './memory-broker.js'
import type { MemorySettings } from './memory-config.js'

/** The adapter's shape, the same in every folder under lib/brokers: kind, settings resolver, factory. */
export const kind = 'memory' as const
export { resolveMemorySettings as resolveSettings } from './memory-config.js'

export { MemoryBroker } from './memory-broker.js'
export { MemoryStore, sharedMemoryStore } from './memory-store.js'

export function createBroker (settings: MemorySettings, _deps?: BrokerDeps): Broker {
  return new MemoryBroker(settings)
}
