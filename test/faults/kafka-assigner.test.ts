/**
 * Herald's Kafka partition assigner alone: a partition whose message a member still holds
 * stays with that member through a rebalance; the rest is spread evenly over the members
 * that read each topic; a member keeping more than its share is told what to hand back.
 */
import { expect } from 'chai'
import { AssignerProtocol } from 'kafkajs'
import { assignHeldSticky, readAssignmentNote, type TopicPartitions } from '../../lib/brokers/kafka/kafka-assigner.js'

interface Result { assignment: TopicPartitions, handBack: TopicPartitions }

function assign (members: Array<{ id: string, topics: string[], held?: TopicPartitions, owned?: TopicPartitions }>, partitions: Record<string, number>): Record<string, Result> {
  const out = assignHeldSticky(
    members.map(m => ({ memberId: m.id, topics: m.topics, held: m.held ?? {}, owned: m.owned ?? {} })),
    Object.keys(partitions),
    topic => Array.from({ length: partitions[topic] ?? 0 }, (_v, i) => i)
  )
  return Object.fromEntries(out.map(({ memberId, memberAssignment }) => {
    const decoded = AssignerProtocol.MemberAssignment.decode(memberAssignment)!
    return [memberId, { assignment: decoded.assignment, handBack: readAssignmentNote(memberAssignment)!.handBack }]
  }))
}

describe('faults: Kafka assigner (held partitions stay put)', function () {
  it('with nothing held, spreads every partition evenly, each to one member', function () {
    const r = assign([{ id: 'a', topics: ['t'] }, { id: 'b', topics: ['t'] }, { id: 'c', topics: ['t'] }], { t: 7 })
    const all = Object.values(r).flatMap(x => x.assignment.t ?? [])
    expect([...all].sort((x, y) => x - y)).to.deep.equal([0, 1, 2, 3, 4, 5, 6])
    expect(Object.values(r).map(x => (x.assignment.t ?? []).length).sort()).to.deep.equal([2, 2, 3])
    expect(Object.values(r).every(x => Object.keys(x.handBack).length === 0)).to.equal(true)
  })

  it('a member joining gets only partitions nobody holds a message of; the holder keeps its own and hands back its excess', function () {
    const r = assign([{ id: 'a', topics: ['t'], held: { t: [0, 1, 2] } }, { id: 'b', topics: ['t'] }], { t: 3 })
    expect(r.a!.assignment.t).to.deep.equal([0, 1, 2])
    expect(r.b!.assignment.t ?? []).to.deep.equal([])
    expect(r.a!.handBack).to.deep.equal({ t: [2] })
    // Once partition 2's message is settled, a asks again without it (and no longer owning it): b gets it.
    const again = assign([{ id: 'a', topics: ['t'], held: { t: [0, 1] }, owned: { t: [0, 1] } }, { id: 'b', topics: ['t'] }], { t: 3 })
    expect(again.a!.assignment.t).to.deep.equal([0, 1])
    expect(again.b!.assignment.t).to.deep.equal([2])
    expect(again.a!.handBack).to.deep.equal({})
  })

  it('held partitions within a member\'s share stay; the free ones balance the group', function () {
    const r = assign([{ id: 'a', topics: ['t'], held: { t: [3] } }, { id: 'b', topics: ['t'], held: { t: [0] } }], { t: 4 })
    expect(r.a!.assignment.t).to.include(3)
    expect(r.b!.assignment.t).to.include(0)
    expect(r.a!.assignment.t).to.have.length(2)
    expect(r.b!.assignment.t).to.have.length(2)
  })

  it('members keep the partitions they own as far as their share goes: a member joining takes the fewest', function () {
    const r = assign([{ id: 'a', topics: ['t'], owned: { t: [0, 1, 2, 3] } }, { id: 'b', topics: ['t'], owned: { t: [4, 5] } }, { id: 'c', topics: ['t'] }], { t: 6 })
    expect(r.a!.assignment.t).to.have.length(2)
    expect(r.a!.assignment.t!.every(p => [0, 1, 2, 3].includes(p))).to.equal(true)
    expect(r.b!.assignment.t).to.deep.equal([4, 5])
    expect(r.c!.assignment.t).to.have.length(2)
  })

  it('a member only gets the topics it reads, and every member\'s topics are assigned', function () {
    const r = assign([{ id: 'a', topics: ['x'] }, { id: 'b', topics: ['x', 'y'] }], { x: 2, y: 2 })
    expect(r.a!.assignment.y).to.equal(undefined)
    expect(r.b!.assignment.y).to.deep.equal([0, 1])
    expect([...(r.a!.assignment.x ?? []), ...(r.b!.assignment.x ?? [])].sort()).to.deep.equal([0, 1])
  })

  it('claims that make no sense are ignored: unknown partitions, topics the member does not read, a partition two members claim', function () {
    const r = assign([{ id: 'a', topics: ['t'], held: { t: [9, 1], other: [0] } }, { id: 'b', topics: ['t'], held: { t: [1] } }], { t: 2 })
    expect(r.a!.assignment.t).to.deep.equal([1])
    expect(r.b!.assignment.t).to.deep.equal([0])
    expect(r.a!.assignment.other).to.equal(undefined)
  })
})
