import { AssignerProtocol, type Assigner, type GroupMemberAssignment, type PartitionAssigner } from 'kafkajs'

/** The protocol name Herald's members offer first; kafkajs's round robin comes second, for groups shared with other clients. */
export const HERALD_ASSIGNER = 'HeraldHeldSticky'
const VERSION = 1

/** Partitions by topic. */
export type TopicPartitions = Record<string, number[]>

/** What a member says when it joins: the partitions it still holds an unsettled message of, and those it would rather keep. */
interface MemberClaims {
  held: TopicPartitions
  /** Its current partitions (less those it hands back): kept where the shares allow, so a rebalance moves as few as it can. */
  owned?: TopicPartitions
}

/** What the leader tells a member besides its partitions: those it keeps only to finish a message, to give up once it has. */
export interface AssignmentNote {
  handBack: TopicPartitions
}

/**
 * A kafkajs partition assigner that never takes a partition away from a member while that
 * member still holds an unsettled message of it (a slow handler, a retry delay): kafkajs
 * rebalances eagerly, and the member's handler keeps running through a rebalance, so
 * giving the partition to another member would hand the same message to two members at
 * once. Each member reports those partitions when it (re)joins (`held`, with the ones it
 * has: `owned`); the leader leaves held partitions where they are, lets each member keep
 * what it owns as far as its fair share goes, spreads the rest evenly (per topic, over the members
 * subscribed to it: unlike kafkajs's round robin, a member only gets topics it reads, and
 * every member's topics are assigned, not only the leader's), and tells a member that keeps
 * more than its share which of its partitions to hand back: that member stops taking
 * messages from them and asks for a new rebalance once their message is settled.
 */
export function heldStickyAssigner (claims: () => { held: TopicPartitions, owned: TopicPartitions }): PartitionAssigner {
  return ({ cluster }): Assigner => ({
    name: HERALD_ASSIGNER,
    version: VERSION,
    protocol ({ topics }) {
      const { held, owned } = claims()
      const userData: MemberClaims = { held, owned }
      return {
        name: HERALD_ASSIGNER,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: VERSION, topics, userData: Buffer.from(JSON.stringify(userData)) })
      }
    },
    async assign ({ members, topics }) {
      const decoded = members.map(m => ({ memberId: m.memberId, ...decodeMember(m.memberMetadata) }))
      // kafkajs gives the leader's own topics; members started with other handlers (herald
      // consumer --topic) may read others: assign those too, once their metadata is known.
      const others = [...new Set(decoded.flatMap(m => m.topics))].filter(t => !topics.includes(t))
      if (others.length > 0) await cluster.addMultipleTargetTopics(others)
      const partitionsOf = (topic: string): number[] => cluster.findTopicPartitionMetadata(topic).map(p => p.partitionId)
      return assignHeldSticky(decoded, [...topics, ...others], partitionsOf)
    }
  })
}

interface Member {
  memberId: string
  topics: string[]
  held: TopicPartitions
  owned?: TopicPartitions
}

function decodeMember (metadata: Buffer): { topics: string[], held: TopicPartitions, owned: TopicPartitions } {
  const { topics, userData } = AssignerProtocol.MemberMetadata.decode(metadata) ?? { topics: [], userData: Buffer.alloc(0) }
  let held: TopicPartitions = {}
  let owned: TopicPartitions = {}
  try {
    const parsed = JSON.parse(userData.toString('utf8')) as Partial<MemberClaims>
    if (parsed.held !== null && typeof parsed.held === 'object') held = parsed.held
    if (parsed.owned !== null && typeof parsed.owned === 'object') owned = parsed.owned
  } catch {
    // Not a Herald member's claims: it holds and owns nothing as far as the assignment goes.
  }
  return { topics, held, owned }
}

function partitionsIn (map: TopicPartitions | undefined, topic: string, partitions: number[]): number[] {
  const list = map?.[topic]
  return Array.isArray(list) ? list.filter(p => partitions.includes(p)) : []
}

/** The assignment itself, apart from kafkajs, so it can be reasoned about (and tested) alone. */
export function assignHeldSticky (members: Member[], topics: string[], partitionsOf: (topic: string) => number[]): GroupMemberAssignment[] {
  const sorted = [...members].sort((a, b) => a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0)
  const load = new Map(sorted.map(m => [m.memberId, 0]))
  const assignment = new Map<string, TopicPartitions>(sorted.map(m => [m.memberId, {}]))
  const handBack = new Map<string, TopicPartitions>(sorted.map(m => [m.memberId, {}]))

  for (const topic of [...new Set(topics)].sort()) {
    const partitions = [...new Set(partitionsOf(topic))].sort((a, b) => a - b)
    const eligible = sorted.filter(m => m.topics.includes(topic))
    if (eligible.length === 0 || partitions.length === 0) continue

    // A held partition stays with its holder (the first, should two claim it).
    const owner = new Map<number, string>()
    for (const m of eligible) {
      for (const p of partitionsIn(m.held, topic, partitions)) if (!owner.has(p)) owner.set(p, m.memberId)
    }
    const count = (id: string): number => [...owner.values()].filter(o => o === id).length
    const claimed = new Map(eligible.map(m => [m.memberId, [...owner].filter(([, o]) => o === m.memberId).map(([p]) => p)]))

    // Fair shares: floor(P / M) each, one more for P mod M members (those holding, then owning, most; then the least loaded).
    const base = Math.floor(partitions.length / eligible.length)
    const extra = partitions.length % eligible.length
    const owns = (m: Member): number => partitionsIn(m.owned, topic, partitions).length
    const byPreference = [...eligible].sort((a, b) =>
      (claimed.get(b.memberId)!.length - claimed.get(a.memberId)!.length) || (owns(b) - owns(a)) || (load.get(a.memberId)! - load.get(b.memberId)!))
    const quota = new Map(byPreference.map((m, i) => [m.memberId, base + (i < extra ? 1 : 0)]))

    // Then each member keeps the partitions it has, as far as its share goes.
    for (const m of byPreference) {
      for (const p of partitionsIn(m.owned, topic, partitions)) {
        if (!owner.has(p) && count(m.memberId) < quota.get(m.memberId)!) owner.set(p, m.memberId)
      }
    }

    for (const p of partitions) {
      if (owner.has(p)) continue
      const room = (id: string): number => quota.get(id)! - count(id)
      const candidates = eligible.filter(m => room(m.memberId) > 0)
      const pool = candidates.length > 0 ? candidates : eligible
      pool.sort((a, b) => (room(b.memberId) - room(a.memberId)) || (load.get(a.memberId)! - load.get(b.memberId)!))
      owner.set(p, pool[0]!.memberId)
    }

    for (const m of eligible) {
      const mine = partitions.filter(p => owner.get(p) === m.memberId)
      if (mine.length > 0) assignment.get(m.memberId)![topic] = mine
      load.set(m.memberId, load.get(m.memberId)! + mine.length)
      const over = mine.length - quota.get(m.memberId)!
      if (over > 0) handBack.get(m.memberId)![topic] = [...claimed.get(m.memberId)!].sort((a, b) => b - a).slice(0, over)
    }
  }

  return sorted.map(m => {
    const note: AssignmentNote = { handBack: handBack.get(m.memberId)! }
    return {
      memberId: m.memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: VERSION, assignment: assignment.get(m.memberId)!, userData: Buffer.from(JSON.stringify(note)) })
    }
  })
}

/** The leader's note in a member's assignment (as `describeGroup()` returns it), if it is Herald's. */
export function readAssignmentNote (memberAssignment: Buffer): AssignmentNote | undefined {
  try {
    const decoded = AssignerProtocol.MemberAssignment.decode(memberAssignment)
    if (decoded === null) return undefined
    const parsed = JSON.parse(decoded.userData.toString('utf8')) as Partial<AssignmentNote>
    return parsed.handBack !== null && typeof parsed.handBack === 'object' ? { handBack: parsed.handBack } : undefined
  } catch {
    return undefined
  }
}
