/** The RabbitMQ header codec: pure, no broker. */
import { expect } from 'chai'
import { decodeHeaders, deliveryCounts, encodeHeaders, KEY_HEADER, REDELIVERIES_HEADER, withRedeliveries } from '../../lib/brokers/rabbitmq/rabbitmq-headers.js'

describe('rabbitmq header codec', function () {
  it('carries the key as herald-key, apart from a user header named key', function () {
    const table = encodeHeaders({ key: 'mine', a: '1' }, 'k-42')
    expect(table).to.deep.equal({ key: 'mine', a: '1', [KEY_HEADER]: 'k-42' })
    expect(decodeHeaders(table)).to.deep.equal({ headers: { key: 'mine', a: '1' }, key: 'k-42' })
  })

  it('never sends a redelivery count copied from a consumed message with a new one', function () {
    expect(encodeHeaders({ [REDELIVERIES_HEADER]: '3', a: '1' }, undefined)).to.deep.equal({ a: '1' })
  })

  it('keeps Herald\'s count out of the headers a handler sees', function () {
    expect(decodeHeaders({ [REDELIVERIES_HEADER]: 2, a: 'x' }).headers).to.deep.equal({ a: 'x' })
  })

  it('decodes the AMQP field types other clients send to strings', function () {
    const { headers } = decodeHeaders({
      bytes: Buffer.from('text'),
      n: 7,
      yes: true,
      big: 10n,
      stamp: { '!': 'timestamp', value: 1700000000 },
      table: { a: 1 },
      empty: null
    })
    expect(headers).to.deep.equal({ bytes: 'text', n: '7', yes: 'true', big: '10', stamp: '1700000000', table: '{"a":1}', empty: '' })
  })

  it('reads Herald\'s count and a quorum queue\'s count, whatever type they came as', function () {
    expect(deliveryCounts(undefined)).to.deep.equal({ herald: 0, broker: undefined })
    expect(deliveryCounts({ [REDELIVERIES_HEADER]: 2, 'x-delivery-count': 1 })).to.deep.equal({ herald: 2, broker: 1 })
    expect(deliveryCounts({ [REDELIVERIES_HEADER]: Buffer.from('3') })).to.deep.equal({ herald: 3, broker: undefined })
    expect(deliveryCounts({ [REDELIVERIES_HEADER]: { '!': 'signedint', value: 4 } })).to.deep.equal({ herald: 4, broker: undefined })
    expect(deliveryCounts({ [REDELIVERIES_HEADER]: 'nonsense', 'x-delivery-count': -1 })).to.deep.equal({ herald: 0, broker: undefined })
  })

  it('puts a copy back with its count, the rest of its headers, and no quorum count of the original', function () {
    expect(withRedeliveries({ a: 'x', [KEY_HEADER]: 'k', 'x-delivery-count': 2 }, 3)).to.deep.equal({ a: 'x', [KEY_HEADER]: 'k', [REDELIVERIES_HEADER]: 3 })
  })
})
