/**
 * Type-level tests of the client pass-through options, checked by `npm run typecheck`.
 * Nothing here runs. Herald names the clients' types through lib/brokers/client-types.ts,
 * which is `any` in a project without that client; with the clients installed (as here)
 * they must be the clients' own types: each line fails the typecheck if it is accepted.
 */
import type { MessagingOptions } from '../../lib/index.js'

export const typedWithClients: MessagingOptions[] = [
  // @ts-expect-error kafkajs's `ssl` is a boolean or TLS options
  { kafka: { client: { ssl: 'yes' } } },
  // @ts-expect-error kafkajs's `sessionTimeout` is a number
  { kafka: { consumer: { sessionTimeout: '30s' } } },
  // @ts-expect-error amqplib's `timeout` is a number
  { rabbitmq: { socketOptions: { timeout: 'soon' } } },
  // @ts-expect-error ioredis's `db` is a number
  { redis: { client: { db: 'zero' } } }
]
