import { randomUUID } from 'node:crypto'
import type { MessagingOptions } from '../lib/index.js'
import type { BrokerKind } from '../lib/brokers/broker.js'

/** Part of every name this test process makes, so that its clean-up removes only its own. */
export const RUN_ID = `r${randomUUID().slice(0, 6)}`

/** A topic (or group) name no other test uses. */
export function randomName (prefix = 'herald-test'): string {
  return `${prefix}-${RUN_ID}-${randomUUID().slice(0, 8)}`
}

/** Resolves when `check` returns a truthy value; fails with `what` after `timeout` ms. */
export async function eventually<T> (check: () => T | Promise<T>, what: string, timeout = 15_000, every = 20): Promise<T> {
  const deadline = Date.now() + timeout
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`)
    await sleep(every)
  }
}

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** The brokers the suite runs on: `HERALD_BROKERS` (comma separated), default all four. */
export function selectedBrokers (): BrokerKind[] {
  const raw = process.env.HERALD_BROKERS ?? 'memory,kafka,rabbitmq,redis'
  return raw.split(',').map(s => s.trim()).filter(s => s !== '') as BrokerKind[]
}

export function brokerSelected (kind: BrokerKind): boolean {
  return selectedBrokers().includes(kind)
}

/** Messaging options for each broker on this machine (loopback only). */
export function brokerOptions (kind: BrokerKind): MessagingOptions {
  const common = { logger: false as const, source: 'herald-test' }
  switch (kind) {
    case 'memory': return { ...common, broker: 'memory' }
    case 'kafka': return { ...common, broker: 'kafka', bootstrapServers: process.env.KAFKA_BOOTSTRAP_SERVERS ?? '127.0.0.1:9092' }
    case 'rabbitmq': return { ...common, broker: 'rabbitmq', url: process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672' }
    case 'redis': return { ...common, broker: 'redis', url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', redis: { prefix: 'herald-test:' } }
  }
}
