import { expect } from 'chai'
import {
  hasPending, isBusyGroup, isNoGroup, isNoScript, parseAutoclaimReply, parseClientId, parseDeliveryCount, parseHoldStates, parseReadReply
} from '../../lib/brokers/redis/redis-replies.js'

/** The Redis reply parsers, on the shapes Redis 6 and 7 send over RESP2 and RESP3 (as ioredis hands them over). */
describe('redis replies', function () {
  const b = (s: string): Buffer => Buffer.from(s)

  describe('XREADGROUP', function () {
    it('reads the RESP2 shape [[stream, [[id, fields], …]], …], buffers or strings', function () {
      const reply = [
        [b('orders'), [[b('1-0'), [b('data'), b('{}')]], [b('2-0'), [b('data'), b('[]')]]]],
        ['audit', [['3-0', ['data', 'x']]]]
      ]
      const parsed = parseReadReply(reply)
      expect(parsed.map(s => s.stream)).to.deep.equal(['orders', 'audit'])
      expect(parsed[0]!.entries.map(e => e.id)).to.deep.equal(['1-0', '2-0'])
      expect(parsed[0]!.entries[1]!.fields).to.deep.equal([b('data'), b('[]')])
      expect(parsed[1]!.entries).to.deep.equal([{ id: '3-0', fields: ['data', 'x'] }])
    })

    it('reads the RESP3 map, which ioredis gives a raw command as a flat [stream, entries, …]', function () {
      const parsed = parseReadReply([b('orders'), [[b('1-0'), [b('data'), b('{}')]]], b('audit'), []])
      expect(parsed.map(s => [s.stream, s.entries.length])).to.deep.equal([['orders', 1], ['audit', 0]])
    })

    it('a block that timed out (nil) reads as nothing', function () {
      expect(parseReadReply(null)).to.deep.equal([])
    })

    it('an entry deleted from the stream while pending comes with nil fields', function () {
      const parsed = parseReadReply([[b('orders'), [[b('1-0'), null]]]])
      expect(parsed[0]!.entries).to.deep.equal([{ id: '1-0', fields: null }])
    })
  })

  describe('XAUTOCLAIM', function () {
    it('reads the cursor, the claimed entries and (Redis 7) the ids deleted from the stream', function () {
      const parsed = parseAutoclaimReply([b('5-0'), [[b('1-0'), [b('data'), b('{}')]], [b('2-0'), null]], [b('3-0')]])
      expect(parsed.cursor).to.equal('5-0')
      expect(parsed.entries.map(e => [e.id, e.fields === null])).to.deep.equal([['1-0', false], ['2-0', true]])
      expect(parsed.deleted).to.deep.equal(['3-0'])
    })

    it('reads the Redis 6 reply, which has no list of deleted ids', function () {
      expect(parseAutoclaimReply(['0-0', []])).to.deep.equal({ cursor: '0-0', entries: [], deleted: [] })
    })

    it('anything else reads as a finished pass with nothing claimed', function () {
      expect(parseAutoclaimReply(null)).to.deep.equal({ cursor: '0-0', entries: [], deleted: [] })
    })
  })

  describe('XPENDING (extended form)', function () {
    it('the delivery count of one entry is the fourth field of its row', function () {
      expect(parseDeliveryCount([[b('1-0'), b('consumer-a'), 1532, 3]])).to.equal(3)
      expect(parseDeliveryCount([['1-0', 'consumer-a', '1532', '2']])).to.equal(2)
    })

    it('an entry that is not pending has a count of 0', function () {
      expect(parseDeliveryCount([])).to.equal(0)
      expect(parseDeliveryCount(null)).to.equal(0)
    })

    it('tells whether a consumer still holds anything', function () {
      expect(hasPending([['1-0', 'consumer-a', 10, 1]])).to.equal(true)
      expect(hasPending([])).to.equal(false)
    })
  })

  it('the hold script answers one state per id, as numbers', function () {
    expect(parseHoldStates([1, 0, 2])).to.deep.equal([1, 0, 2])
    expect(parseHoldStates(['1'])).to.deep.equal([1])
    expect(parseHoldStates(null)).to.deep.equal([])
  })

  it('CLIENT ID answers an integer; anything else is no id', function () {
    expect(parseClientId(42)).to.equal(42)
    expect(parseClientId('42')).to.equal(42)
    expect(parseClientId(null)).to.equal(undefined)
    expect(parseClientId('x')).to.equal(undefined)
  })

  it('error replies are told apart by their code: NOGROUP, BUSYGROUP, NOSCRIPT', function () {
    expect(isNoGroup(new Error('NOGROUP No such key \'s\' or consumer group \'g\''))).to.equal(true)
    expect(isBusyGroup(new Error('BUSYGROUP Consumer Group name already exists'))).to.equal(true)
    expect(isNoScript(new Error('NOSCRIPT No matching script. Please use EVAL.'))).to.equal(true)
    expect(isNoGroup(new Error('ERR something else'))).to.equal(false)
    expect(isNoGroup('NOGROUP as a string is not an error reply')).to.equal(false)
  })
})
