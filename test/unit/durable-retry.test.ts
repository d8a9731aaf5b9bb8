import { expect } from 'chai'
import { retryTier } from '../../lib/brokers/rabbitmq/rabbitmq-retries.js'
import { attemptsBefore, RETRY_HEADERS } from '../../lib/runner/durable-retry.js'
import { resolveRetryPolicy } from '../../lib/handlers/options.js'

describe('unit: durable retries', function () {
  it('RabbitMQ rounds a delay up to its tier (never down: a retry never comes back early), then to whole hours', function () {
    expect([1, 1000, 1001, 5000, 29_999, 60_000, 90_000, 3_600_000, 3_600_001, 5_400_000].map(retryTier))
      .to.deep.equal([1000, 1000, 5000, 5000, 30_000, 60_000, 120_000, 3_600_000, 7_200_000, 7_200_000])
  })

  it('counts on from herald-attempt; a missing or malformed one counts from 0', function () {
    expect(attemptsBefore({ [RETRY_HEADERS.attempt]: '3' })).to.equal(2)
    expect(attemptsBefore({})).to.equal(0)
    for (const bad of ['', 'x', '-2', '1.5', '99999999999']) expect(attemptsBefore({ [RETRY_HEADERS.attempt]: bad }), bad).to.equal(0)
  })

  it('durableRetryAfter defaults to 60000 ms; false and Infinity mean never', function () {
    expect(resolveRetryPolicy('h', {}).durableRetryAfter).to.equal(60_000)
    expect(resolveRetryPolicy('h', { durableRetryAfter: false }).durableRetryAfter).to.equal(Number.POSITIVE_INFINITY)
    expect(resolveRetryPolicy('h', { durableRetryAfter: Number.POSITIVE_INFINITY }).durableRetryAfter).to.equal(Number.POSITIVE_INFINITY)
    expect(resolveRetryPolicy('h', { durableRetryAfter: 0 }).durableRetryAfter).to.equal(0)
  })
})
