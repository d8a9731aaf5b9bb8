// The embedded broker's log: retention and trimming, alone (no Messaging, no runner).
import { expect } from 'chai'
import { MemoryStore, type MemoryEntry, type MemoryMember } from '../../lib/brokers/memory/memory-store.js'

const value = Buffer.from('{}')

/** A member that takes everything offered and remembers it. */
function taker (): MemoryMember & { got: MemoryEntry[] } {
  const got: MemoryEntry[] = []
  return { got, offer: (entry) => { got.push(entry); return true } }
}

describe('unit: memory store', function () {
  it('keeps exactly `retain` entries once every group is done with them, oldest dropped first, over many times retain', function () {
    const store = new MemoryStore(100)
    const member = taker()
    store.join('t', 'g', member)
    for (let i = 0; i < 5000; i++) {
      const entry = store.append('t', undefined, value, {})
      store.ack('t', 'g', entry.seq)
    }
    const kept = store.entries('t')
    expect(kept).to.have.length(100)
    expect(kept[0]!.seq).to.equal(member.got[4900]!.seq)
    expect(kept.at(-1)!.seq).to.equal(member.got[4999]!.seq)
  })

  it('never drops an entry a group has not acknowledged, nor one released for redelivery, nor what follows them', function () {
    const store = new MemoryStore(10)
    const member = taker()
    store.join('t', 'g', member)
    const first = store.append('t', undefined, value, {})
    const second = store.append('t', undefined, value, {})
    store.ack('t', 'g', first.seq)
    for (let i = 0; i < 3000; i++) store.ack('t', 'g', store.append('t', undefined, value, {}).seq)
    // The second is still pending: it and everything after it stay.
    expect(store.entries('t')).to.have.length(3001)
    expect(store.entries('t')[0]!.seq).to.equal(second.seq)
    store.release('t', 'g', second.seq)
    store.append('t', undefined, value, {})
    expect(store.entries('t')[0]!.seq).to.equal(second.seq)
    // Redelivered, then acknowledged: now it can go, and the log shrinks to retain.
    const again = member.got.filter(e => e.seq === second.seq)
    expect(again).to.have.length(2)
    store.ack('t', 'g', second.seq)
    expect(store.entries('t')).to.have.length(10)
  })

  it('a group that joins later starts from the earliest retained entry', function () {
    const store = new MemoryStore(5)
    const early = taker()
    store.join('t', 'a', early)
    for (let i = 0; i < 2000; i++) store.ack('t', 'a', store.append('t', undefined, value, {}).seq)
    const late = taker()
    store.join('t', 'b', late)
    expect(late.got.map(e => e.seq)).to.deep.equal(early.got.slice(-5).map(e => e.seq))
  })
})
