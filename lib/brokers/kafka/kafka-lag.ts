import type { Admin } from 'kafkajs'
import type { TopicLag } from '../broker.js'

/**
 * A group's lag on each topic: for every partition, the high watermark (the offset the next
 * message gets) minus the group's committed offset. A partition the group never committed
 * counts from the low watermark, as Herald's groups start from the beginning. A topic
 * the cluster does not know is left out.
 */
export async function kafkaLag (admin: Admin, group: string, topics: readonly string[]): Promise<TopicLag[]> {
  const committed = new Map<string, Map<number, string>>()
  for (const { topic, partitions } of await admin.fetchOffsets({ groupId: group, topics: [...topics] })) {
    committed.set(topic, new Map(partitions.map(p => [p.partition, p.offset])))
  }
  const out: TopicLag[] = []
  for (const topic of topics) {
    let ends
    try {
      ends = await admin.fetchTopicOffsets(topic)
    } catch {
      continue
    }
    let messages = 0
    for (const { partition, high, low } of ends) {
      const mark = committed.get(topic)?.get(partition)
      const from = mark === undefined || Number(mark) < 0 ? Number(low) : Number(mark)
      messages += Math.max(0, Number(high) - from)
    }
    out.push({ topic, messages })
  }
  return out
}
