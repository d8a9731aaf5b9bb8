import type { Redis } from 'ioredis'
import type { TopicLag } from '../broker.js'
import { text } from './redis-replies.js'

/**
 * A group's lag on each stream, from `XINFO GROUPS`: entries never delivered to the group
 * (`lag`, Redis 7+) plus entries delivered and not acknowledged (`pending`). A stream or
 * group that does not exist, or a lag Redis cannot tell (after deletions), is left out.
 */
export async function redisLag (client: Redis, prefix: string, group: string, topics: readonly string[]): Promise<TopicLag[]> {
  const out: TopicLag[] = []
  for (const topic of topics) {
    let groups: unknown
    try {
      groups = await client.call('XINFO', 'GROUPS', prefix + topic)
    } catch {
      continue
    }
    if (!Array.isArray(groups)) continue
    for (const fields of groups) {
      if (!Array.isArray(fields)) continue
      const info = new Map<string, unknown>()
      for (let i = 0; i + 1 < fields.length; i += 2) info.set(text(fields[i]), fields[i + 1])
      if (text(info.get('name')) !== group) continue
      const lag = info.get('lag')
      if (typeof lag !== 'number') continue
      out.push({ topic, messages: lag + Number(info.get('pending') ?? 0) })
    }
  }
  return out
}
