import { expect } from 'chai'
import { decodeEntry } from '../../lib/brokers/redis/redis-stream.js'

/** How a stream entry's fields are read: as Herald writes them, and as other producers may. */
describe('redis stream entries', function () {
  const b = (s: string): Buffer => Buffer.from(s)

  it('reads data, key and headers as Herald writes them, buffers or strings, other fields ignored', function () {
    for (const f of [b, (s: string) => s]) {
      const entry = decodeEntry('s', '1-0', [f('data'), f('{"a":1}'), f('key'), f('k-1'), f('extra'), f('x'), f('headers'), f('{"event-name":"a.b","x":"1"}')])
      expect(entry.value.toString()).to.equal('{"a":1}')
      expect(entry.key).to.equal('k-1')
      expect(entry.headers).to.deep.equal({ 'event-name': 'a.b', x: '1' })
      expect(entry.problem).to.equal(undefined)
    }
  })

  it('headers another producer wrote with other values: strings kept, null left out, others as JSON; no __proto__ header', function () {
    const entry = decodeEntry('s', '1-0', [b('data'), b('{}'), b('headers'), b('{"a":"x","n":2,"o":{"p":true},"z":null,"__proto__":"y"}')])
    expect(entry.headers).to.deep.equal({ a: 'x', n: '2', o: '{"p":true}' })
    expect(Object.getPrototypeOf(entry.headers)).to.equal(Object.prototype)
    expect(Object.hasOwn(entry.headers, '__proto__')).to.equal(false)
  })

  it('says what is wrong with an entry not as Herald writes it, and still delivers it', function () {
    const entry = decodeEntry('s', '1-0', [b('headers'), b('[1]'), b('dat'), b('x')])
    expect(entry.value.length).to.equal(0)
    expect(entry.headers).to.deep.equal({})
    expect(entry.problem).to.equal('its "headers" field is not a JSON object; headers ignored; it has no "data" field; delivered with an empty body')
  })
})
