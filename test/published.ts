// Reading what the embedded broker holds for a topic, and checking an event envelope on
// it: shared by the Fastify plugin and Express middleware tests.
import { expect } from 'chai'
import { sharedMemoryStore } from '../lib/brokers/memory/index.js'

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
