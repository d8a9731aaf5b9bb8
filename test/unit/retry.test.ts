import { expect } from 'chai'
import type { RetryPolicy } from '../../lib/handlers/handler.js'
import { RetryWaits, retryDelayFor } from '../../lib/runner/retry.js'

const policy = (over: Partial<RetryPolicy>): RetryPolicy => ({ maxRetries: 5, retryDelay: 100, backoff: 'exponential', maxRetryDelay: 1000, deadLetter: undefined, timeout: undefined, durableRetryAfter: Number.POSITIVE_INFINITY, ...over })

describe('unit: retry delays', function () {
  it('exponential: retryDelay × 2^(retry-1), capped at maxRetryDelay', function () {
    expect([1, 2, 3, 4, 5, 6].map(r => retryDelayFor(policy({}), r))).to.deep.equal([100, 200, 400, 800, 1000, 1000])
  })

  it('fixed: retryDelay every time, capped at maxRetryDelay', function () {
    expect([1, 2, 3].map(r => retryDelayFor(policy({ backoff: 'fixed' }), r))).to.deep.equal([100, 100, 100])
    expect(retryDelayFor(policy({ backoff: 'fixed', retryDelay: 5000 }), 1)).to.equal(1000)
  })

  it('cancelAll() ends every wait at once with false, and any later wait too', async function () {
    const waits = new RetryWaits()
    const long = waits.wait(60_000)
    waits.cancelAll()
    expect(await long).to.equal(false)
    expect(await waits.wait(60_000)).to.equal(false)
  })
})
