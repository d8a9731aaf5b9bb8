import { expect } from 'chai'
import type { Delivery } from '../../lib/brokers/broker.js'
import { DLQ_HEADERS, DLQ_ORIGINAL_HEADERS, deadLetterMessage, deadLetterTopic, truncatedDeadLetter } from '../../lib/runner/dead-letter.js'

const delivery = (over: Partial<Delivery> = {}): Delivery => ({
  topic: 'orders',
  value: Buffer.from('{"id":1}'),
  key: 'k1',
  headers: { 'event-id': 'e-1', 'x-trace': 't' },
  redeliveries: 0,
  id: 'orders/0@7',
  ack: async () => {},
  release: async () => {},
  ...over
})

describe('unit: dead letters', function () {
  it('go to <topic>.<group>.dlq by default, to the deadLetter option when given, nowhere for false', function () {
    expect(deadLetterTopic('orders', 'billing', { deadLetter: undefined })).to.equal('orders.billing.dlq')
    expect(deadLetterTopic('orders', 'billing', { deadLetter: 'dead' })).to.equal('dead')
    expect(deadLetterTopic('orders', 'billing', { deadLetter: false })).to.equal(false)
  })

  it('keep the body, key and headers, and add the herald-dlq-* headers; the reason is one line, masked, at most 1000 characters', function () {
    const reason = `Error: connect to redis://user:hunter2@db failed\nat line 2 ${'x'.repeat(2000)}`
    const m = deadLetterMessage(delivery(), 'orders.billing.dlq', 'billing', 3, reason)
    expect(m.topic).to.equal('orders.billing.dlq')
    expect(m.value.toString()).to.equal('{"id":1}')
    expect(m.key).to.equal('k1')
    expect(m.headers).to.include({ 'event-id': 'e-1', 'x-trace': 't', [DLQ_HEADERS.topic]: 'orders', [DLQ_HEADERS.group]: 'billing', [DLQ_HEADERS.attempts]: '3' })
    const stored = m.headers[DLQ_HEADERS.reason]!
    expect(stored).not.to.include('hunter2').and.not.to.include('\n')
    expect(stored.length).to.be.at.most(1001)
    expect(Number.isNaN(Date.parse(m.headers[DLQ_HEADERS.failedAt]!))).to.equal(false)
  })

  it('truncated: a JSON pointer to the original with the herald-dlq-* headers only, and no key', function () {
    const m = truncatedDeadLetter(delivery({ value: Buffer.alloc(5000, 0x61) }), 'dead', 'billing', 1, 'too large')
    expect(JSON.parse(m.value.toString())).to.deep.equal({ truncated: true, topic: 'orders', id: 'orders/0@7', bytes: 5000, eventId: 'e-1' })
    expect(m.key).to.equal(undefined)
    expect(m.headers).to.not.have.property('x-trace')
    expect(m.headers[DLQ_HEADERS.truncated]).to.equal('true')
    expect(m.headers[DLQ_HEADERS.reason]).to.equal('too large')
  })

  it('a dead letter dead-lettered again, and again, keeps its first failure in herald-dlq-original-*; a first letter has none', function () {
    const first = deadLetterMessage(delivery(), 'orders.billing.dlq', 'billing', 0, 'InvalidMessageError: not JSON')
    expect(Object.keys(first.headers).filter(h => h.startsWith('herald-dlq-original-'))).to.deep.equal([])
    const asDelivery = (m: typeof first, topic: string): Delivery => delivery({ topic, value: m.value, key: m.key, headers: m.headers })
    const second = deadLetterMessage(asDelivery(first, 'orders.billing.dlq'), 'orders.billing.dlq.reader.dlq', 'reader', 2, 'Error: repair failed')
    const third = deadLetterMessage(asDelivery(second, 'orders.billing.dlq.reader.dlq'), 'last', 'reader2', 1, 'Error: still broken')
    for (const m of [second, third]) {
      expect(m.headers).to.include({
        [DLQ_ORIGINAL_HEADERS.reason]: 'InvalidMessageError: not JSON',
        [DLQ_ORIGINAL_HEADERS.topic]: 'orders',
        [DLQ_ORIGINAL_HEADERS.group]: 'billing',
        [DLQ_ORIGINAL_HEADERS.attempts]: '0',
        [DLQ_ORIGINAL_HEADERS.failedAt]: first.headers[DLQ_HEADERS.failedAt],
        'x-trace': 't'
      })
    }
    expect(third.headers).to.include({ [DLQ_HEADERS.reason]: 'Error: still broken', [DLQ_HEADERS.topic]: 'orders.billing.dlq.reader.dlq', [DLQ_HEADERS.group]: 'reader2', [DLQ_HEADERS.attempts]: '1' })
    // Stored as a pointer, it still says what failed first.
    const truncated = truncatedDeadLetter(asDelivery(second, 'orders.billing.dlq'), 'dead', 'reader', 1, 'too large')
    expect(truncated.headers[DLQ_ORIGINAL_HEADERS.reason]).to.equal('InvalidMessageError: not JSON')
    expect(truncated.headers[DLQ_ORIGINAL_HEADERS.topic]).to.equal('orders')
  })
})
