// Reading what the embedded broker holds for a topic, and checking an event envelope on
// it: shared by the Fastify plugin and Express middleware tests.
import amqplib from 'amqplib'
import { expect } from 'chai'
import { sharedMemoryStore } from '../lib/brokers/memory/index.js'
import type { MessagingOptions } from '../lib/messaging.js'
import { brokerOptions, randomName } from './helpers.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

export interface Published {
  topic: string
  key: string | undefined
  headers: Record<string, string>
  event: { id: string, name: string, data: unknown, timestamp: string, source: string }
}

/** What the embedded broker holds for a topic, decoded. */
export function published (topic: string): Published[] {
  return sharedMemoryStore().entries(topic).map(e => ({
    topic: e.topic,
    key: e.key,
    headers: e.headers,
    event: JSON.parse(e.value.toString('utf8'))
  }))
}

/** Checks one published event: topic, key, the envelope's fields and the event-* headers. */
export function expectEnvelope (p: Published, expected: { name: string, data: unknown, key?: string, topic: string, source: string }): void {
  expect(p.topic).to.equal(expected.topic)
  expect(p.key).to.equal(expected.key)
  expect(Object.keys(p.event).sort()).to.deep.equal(['data', 'id', 'name', 'source', 'timestamp'])
  expect(p.event.id).to.match(UUID)
  expect(p.event.name).to.equal(expected.name)
  expect(p.event.data).to.deep.equal(expected.data)
  expect(p.event.timestamp).to.match(ISO_UTC)
  expect(Math.abs(Date.parse(p.event.timestamp) - Date.now())).to.be.below(60_000)
  expect(p.event.source).to.equal(expected.source)
  expect(p.headers).to.include({
    'event-name': expected.name,
    'event-id': p.event.id,
    'event-source': expected.source,
    'content-type': 'application/json'
  })
}

/**
 * A real, deterministic broker failure for one topic while another topic works: on a
 * RabbitMQ exchange of its own, `good` routes to an ordinary queue and `refused` to a
 * queue of max length 0 that rejects publishes, so RabbitMQ nacks (basic.nack) every
 * message to it: a failure that may pass (the queue may drain), as in production.
 */
export async function rabbitRefusingTopic (): Promise<{ options: MessagingOptions, good: string, refused: string, cleanup: () => Promise<void> }> {
  const url = String(brokerOptions('rabbitmq').url)
  const exchange = randomName('herald-ex')
  const good = randomName('good')
  const refused = randomName('refused')
  const connection = await amqplib.connect(url)
  const channel = await connection.createChannel()
  await channel.assertExchange(exchange, 'topic', { durable: true })
  await channel.assertQueue(good, { durable: true })
  await channel.bindQueue(good, exchange, good)
  await channel.assertQueue(refused, { durable: true, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } })
  await channel.bindQueue(refused, exchange, refused)
  return {
    options: { broker: 'rabbitmq', url, rabbitmq: { exchange } },
    good,
    refused,
    cleanup: async () => {
      await channel.deleteQueue(good)
      await channel.deleteQueue(refused)
      await channel.deleteExchange(exchange)
      await connection.close()
    }
  }
}

/** How many messages a RabbitMQ queue holds (the `good` queue of `rabbitRefusingTopic`). */
export async function rabbitQueueDepth (queue: string): Promise<number> {
  const connection = await amqplib.connect(String(brokerOptions('rabbitmq').url))
  try {
    const channel = await connection.createChannel()
    return (await channel.checkQueue(queue)).messageCount
  } finally {
    await connection.close()
  }
}
