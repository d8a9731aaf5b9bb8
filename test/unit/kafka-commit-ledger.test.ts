/** The Kafka commit ledger and lanes, alone: what a commit says, and who goes next. */
import { expect } from 'chai'
import { CommitLedger, decodeMark, encodeMark } from '../../lib/brokers/kafka/kafka-commit-ledger.js'
import { CommitRounds, type PartitionCommit } from '../../lib/brokers/kafka/kafka-commit-rounds.js'
import { PartitionFlow } from '../../lib/brokers/kafka/kafka-partition-flow.js'

describe('unit: Kafka commit ledger', function () {
  it('commits the lowest unsettled offset, never past it, with the acked offsets above it', function () {
    const ledger = new CommitLedger()
    for (const o of [10, 11, 12, 13, 15]) expect(ledger.fetched(o)).to.equal(true)
    ledger.ack(12)
    ledger.ack(13)
    ledger.ack(15)
    // 14 is not in the log (a gap, as after compaction): 12 to 15 is one acked range.
    expect(ledger.mark(true)).to.deep.equal({ offset: 10, deliveries: 1, acked: [[12, 15]] })
    ledger.ack(11)
    expect(ledger.mark(true)).to.deep.equal({ offset: 10, deliveries: 1, acked: [[11, 15]] })
    ledger.ack(10)
    expect(ledger.mark(false)).to.deep.equal({ offset: 16, deliveries: 0, acked: [] })
  })

  it('after a restart: skips what was acked and what was fetched already, and counts the head\'s deliveries', function () {
    const first = new CommitLedger()
    for (const o of [0, 1, 2]) first.fetched(o)
    first.ack(1)
    const metadata = encodeMark(first.mark(true)!)
    const mark = decodeMark(metadata, 0)
    expect(mark).to.deep.equal({ offset: 0, deliveries: 1, acked: [[1, 1]] })
    const next = new CommitLedger()
    next.recover(0, mark)
    expect([0, 1, 2].map(o => next.fetched(o))).to.deep.equal([true, false, true])
    expect(next.fetched(0), 'fetched again after a rejoin').to.equal(false)
    expect(next.recoveredDeliveries(0)).to.equal(1)
    expect(next.recoveredDeliveries(2)).to.equal(0)
    // A release counts nothing: the count written back is the one read.
    expect(next.mark(false)!.deliveries).to.equal(1)
    expect(next.mark(true)!.deliveries).to.equal(2)
  })

  it('records the lease (what may be in hand until the next commit) relative to the offset, and reads it back', function () {
    const ledger = new CommitLedger()
    for (const o of [100, 101, 102]) ledger.fetched(o)
    ledger.ack(101)
    const mark = ledger.mark(true, 164)!
    expect(mark).to.deep.equal({ offset: 100, deliveries: 1, acked: [[101, 101]], lease: 164 })
    expect(JSON.parse(encodeMark(mark)).herald.lease, 'relative, like the acked ranges').to.equal(64)
    expect(decodeMark(encodeMark(mark), 100)).to.deep.equal(mark)
    // A lease not past the offset says nothing: nothing beyond the head may be in hand.
    expect(ledger.mark(false, 100)).to.not.have.property('lease')
    expect(decodeMark(encodeMark({ offset: 5, deliveries: 0, acked: [] }), 5)).to.not.have.property('lease')
  })

  it('ignores metadata that is not Herald\'s or belongs to another offset', function () {
    expect(decodeMark('kafka-streams-stuff', 5)).to.equal(undefined)
    expect(decodeMark(encodeMark({ offset: 4, deliveries: 3, acked: [] }), 5)).to.equal(undefined)
    expect(encodeMark({ offset: 1e12, deliveries: 9, acked: Array.from({ length: 500 }, (_, i) => [1e12 + 2 * i + 1, 1e12 + 2 * i + 1] as [number, number]) }).length).to.be.below(4096)
  })
})

describe('unit: Kafka partition lanes', function () {
  const entry = (offset: number, key?: string): { offset: number, key: string | undefined, item: number } => ({ offset, key, item: offset })

  it('different keys go side by side, one key in order, a keyless message on its own', function () {
    const flow = new PartitionFlow<number>()
    for (const e of [entry(0, 'a'), entry(1, 'a'), entry(2, 'b'), entry(3)]) flow.add(e)
    const a0 = flow.take()!
    expect([a0.offset, flow.take()!.offset, flow.take()!.offset]).to.deep.equal([0, 2, 3])
    expect(flow.take(), 'a1 waits for a0').to.equal(undefined)
    flow.settled(a0)
    expect(flow.take()!.offset).to.equal(1)
  })

  it('a released message is the next handed over, before the rest of its key', function () {
    const flow = new PartitionFlow<number>()
    flow.add(entry(0, 'a'))
    flow.add(entry(1, 'a'))
    const a0 = flow.take()!
    flow.returned(a0)
    expect(flow.take()!.offset).to.equal(0)
    expect(flow.buffered).to.equal(1)
  })
})

describe('unit: Kafka commit rounds', function () {
  /** Rounds whose commits are recorded (each commit is what `collect` returned: the round's number). */
  function rounds (): { commits: string[][], rounds: CommitRounds } {
    const commits: string[][] = []
    let n = 0
    const collect = (): { offsets: PartitionCommit[], landed: () => void } => ({ offsets: [{ topic: 't', partition: 0, offset: String(++n), metadata: '' }], landed: () => {} })
    return { commits, rounds: new CommitRounds(collect, async offsets => { commits.push(offsets.map(o => o.offset)) }, () => {}, () => {}) }
  }

  it('acks that may wait share one commit, and a commit asked for at once takes them along', async function () {
    const { commits, rounds: r } = rounds()
    // Waits that never end on their own: only soon() can start the round.
    const a = r.later(3_600_000)
    const b = r.later(3_600_000)
    expect(a).to.equal(b)
    await r.soon()
    await a
    expect(commits).to.deep.equal([['1']])
  })

  it('a commit that may wait is still made on its own', async function () {
    const { commits, rounds: r } = rounds()
    await r.later(1)
    expect(commits).to.deep.equal([['1']])
  })

  it('asked for during a round, a commit that may wait does not start before its time; one asked at once does', async function () {
    const { commits, rounds: r } = rounds()
    const first = r.soon()
    // The first round has started (its request is on its way): these are for the next one.
    await Promise.resolve()
    await new Promise(resolve => setImmediate(resolve))
    const waiting = r.later(3_600_000)
    await first
    expect(commits).to.deep.equal([['1']])
    await r.soon()
    await waiting
    expect(commits).to.deep.equal([['1'], ['2']])
  })
})
