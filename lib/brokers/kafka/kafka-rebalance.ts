import kafkajs, { type Consumer, type KafkaJSProtocolError } from 'kafkajs'
import { readAssignmentNote } from './kafka-assigner.js'

/** An error kafkajs's consumer loop takes for a rebalance under way: it rejoins the group. */
export function rebalanceRequest (tp: string): KafkaJSProtocolError {
  // kafkajs's errors are not among the names Node finds in its CommonJS exports.
  return new kafkajs.KafkaJSProtocolError({
    name: 'KafkaJSProtocolError',
    message: `Herald hands partition ${tp} back to the group`,
    type: 'REBALANCE_IN_PROGRESS',
    code: 27,
    retriable: false
  } as unknown as Error)
}

/** A commit refused because the group is rebalancing or this member's generation is over. */
export function isRebalanceAnswer (err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const type = (e as { type?: unknown }).type
    if (type === 'REBALANCE_IN_PROGRESS' || type === 'ILLEGAL_GENERATION' || type === 'UNKNOWN_MEMBER_ID' || type === 'NOT_COORDINATOR_FOR_GROUP') return true
    if (e.cause === e) break
  }
  return /not initialized|rebalanc/i.test(err instanceof Error ? err.message : String(err))
}

/**
 * The partitions (`topic/partition`) the leader asked this member to hand back once their
 * messages are settled, from its note in the group's description (kafka-assigner.ts).
 */
export async function readHandBack (consumer: Consumer, memberId: string, assignment: Map<string, number[]>): Promise<string[]> {
  const group = await consumer.describeGroup()
  const me = group.members.find(m => m.memberId === memberId)
  const note = me === undefined ? undefined : readAssignmentNote(me.memberAssignment)
  if (note === undefined) return []
  const partitions: string[] = []
  for (const [topic, list] of Object.entries(note.handBack)) {
    for (const partition of Array.isArray(list) ? list : []) {
      if ((assignment.get(topic) ?? []).includes(partition)) partitions.push(`${topic}/${partition}`)
    }
  }
  return partitions
}
