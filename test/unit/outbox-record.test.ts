import { expect } from 'chai'
import { decodeRecord, encodeRecord, scanSegment } from '../../lib/outbox/outbox-record.js'

const message = { topic: 'orders', key: 'k', headers: { 'event-name': 'order.paid' }, value: Buffer.from('{"id":1}') }

describe('unit: outbox records', function () {
  it('a record is one line `<crc32> <json>\\n` that decodes back to the message and its time', function () {
    const line = encodeRecord(message, 1234)
    expect(line.at(-1)).to.equal(0x0a)
    expect(line.subarray(0, 9).toString()).to.match(/^[0-9a-f]{8} $/)
    const entry = decodeRecord(line.subarray(0, line.length - 1))
    expect(entry?.at).to.equal(1234)
    expect(entry?.message).to.deep.equal(message)
  })

  it('a body that is not UTF-8 travels in base64 and comes back byte for byte', function () {
    const binary = { ...message, key: undefined, value: Buffer.from([0xff, 0x00, 0xc3]) }
    const line = encodeRecord(binary, 1)
    expect(line.toString()).to.include('"value64"')
    expect(decodeRecord(line.subarray(0, line.length - 1))?.message.value.equals(binary.value)).to.equal(true)
  })

  it('a garbled line (checksum mismatch) and a line cut short are told apart from records', function () {
    const good = encodeRecord(message, 1)
    const garbled = Buffer.from(good)
    garbled[20] = garbled[20]! ^ 0x01
    const cut = good.subarray(0, 15)
    const lines = scanSegment(Buffer.concat([good, garbled, cut]), 0)
    expect(lines.map(l => [l.entry !== undefined, l.complete])).to.deep.equal([[true, true], [false, true], [false, false]])
    expect(lines[1]!.start).to.equal(good.length)
  })
})
