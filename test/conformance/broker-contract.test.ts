import { createMessaging } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerOptions, selectedBrokers } from '../helpers.js'
import { brokerContract } from './broker-contract.js'

// Herald's four adapters, through the same factory `createMessaging` uses.
for (const kind of selectedBrokers()) {
  brokerContract({
    name: kind,
    connect: async () => await createMessaging(brokerOptions(kind as BrokerKind)).broker(),
    features: { newGroupReadsHistory: kind !== 'rabbitmq' },
    cleanUp: async (queues) => await cleanUpRun(kind, queues)
  })
}
