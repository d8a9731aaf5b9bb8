import { expect } from 'chai'
import { addRemoved } from '../../lib/brokers/kafka/kafka-dead-letters.js'
import { describeLetter, preview, refusal, replayMessage } from '../../lib/dead-letters/letter.js'
import { DLQ_HEADERS } from '../../lib/runner/dead-letter.js'

const stored = (headers: Record<string, string>, value = Buffer.from('{"id":"e-1","name":"order.placed","data":{}}')) =>
  ({ id: '0:7', value, key: 'k1', headers })

const dlq = { [DLQ_HEADERS.reason]: 'Error: boom', [DLQ_HEADERS.topic]: 'orders', [DLQ_HEADERS.group]: 'billing', [DLQ_HEADERS.attempts]: '4', [DLQ_HEADERS.failedAt]: '2026-11-30T23:00:00.000Z' }

describe('unit: inspecting and replaying dead letters', function () {
  it('a letter is described from its headers, and from its body when it is a Herald envelope without event headers', function () {
    const l = describeLetter(stored({ ...dlq, 'x-trace': 't' }))
    expect(l).to.deep.include({ id: '0:7', key: 'k1', reason: 'Error: boom', topic: 'orders', group: 'billing', attempts: 4, failedAt: '2026-11-30T23:00:00.000Z', eventName: 'order.placed', eventId: 'e-1', truncated: false, replayCount: 0 })
    expect(describeLetter(stored({}, Buffer.from('plain'))).reason).to.equal('(no reason)')
    expect(describeLetter(stored({ 'event-id': 'h-1', 'event-name': 'from.header' })).eventId).to.equal('h-1')
  })

  it('the preview is at most 80 characters, control characters as spaces, and hex for a body that is not UTF-8', function () {
    expect(preview(Buffer.from('a\nb\tc'))).to.equal('a b c')
    const long = preview(Buffer.from('x'.repeat(200)))
    expect(long).to.have.length(80)
    expect(long.endsWith('…')).to.equal(true)
    expect(preview(Buffer.from([0xff, 0x00, 0x41]))).to.equal('hex:ff0041')
    expect(preview(Buffer.alloc(100, 0xff)).length).to.be.at.most(80)
  })

  it('a replay keeps body, key and other headers, drops herald-dlq-* and x-delivery-count, and counts its replays', function () {
    const s = stored({ ...dlq, 'herald-dlq-original-reason': 'first', 'x-delivery-count': '3', 'x-trace': 't', 'herald-replay-count': '2', 'herald-replayed-from': 'old' })
    const m = replayMessage(s, describeLetter(s), 'orders', 'orders.billing.dlq')
    expect(m.topic).to.equal('orders')
    expect(m.key).to.equal('k1')
    expect(m.value).to.equal(s.value)
    expect(m.headers).to.deep.equal({ 'x-trace': 't', 'herald-replayed-from': 'orders.billing.dlq', 'herald-replay-count': '3' })
  })

  it('a letter is refused when truncated, of another topic or group, or replayed maxReplays times', function () {
    const ok = describeLetter(stored(dlq))
    expect(refusal(ok, 'orders', 'billing', 5)).to.equal(undefined)
    expect(refusal(describeLetter(stored({ ...dlq, [DLQ_HEADERS.truncated]: 'true' })), 'orders', 'billing', 5)).to.match(/only a pointer/)
    expect(refusal(ok, 'payments', 'billing', 5)).to.match(/failed on topic "orders", not "payments"/)
    expect(refusal(ok, 'orders', 'mailer', 5)).to.match(/failed in group "billing", not "mailer"/)
    expect(refusal(describeLetter(stored({ ...dlq, 'herald-replay-count': '5' })), 'orders', 'billing', 5)).to.match(/replayed 5 times already \(maxReplays 5\)/)
    expect(refusal(ok, 'orders', 'billing', 0)).to.match(/maxReplays 0/)
  })

  it('Kafka: a removal moves the committed offset over the removed letters at its foot, and keeps the others as merged ranges', function () {
    let p = { committed: 10, removed: [] as Array<[number, number]> }
    p = addRemoved(p, 12)
    expect(p).to.deep.equal({ committed: 10, removed: [[12, 12]] })
    p = addRemoved(p, 13)
    expect(p).to.deep.equal({ committed: 10, removed: [[12, 13]] })
    p = addRemoved(p, 15)
    expect(p).to.deep.equal({ committed: 10, removed: [[12, 13], [15, 15]] })
    p = addRemoved(p, 10)
    expect(p).to.deep.equal({ committed: 11, removed: [[12, 13], [15, 15]] })
    p = addRemoved(p, 11)
    expect(p).to.deep.equal({ committed: 14, removed: [[15, 15]] })
    p = addRemoved(p, 14)
    expect(p).to.deep.equal({ committed: 16, removed: [] })
  })
})
