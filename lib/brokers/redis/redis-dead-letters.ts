import type { Redis } from 'ioredis'
import { BrokerError } from '../../errors.js'
import type { DeadLetterCursor } from '../broker.js'
import { text } from './redis-replies.js'
import { decodeEntry, xaddArguments } from './redis-stream.js'
import { groupRetryTopic } from '../shared/group-destination.js'

/**
 * A pass over a dead-letter stream with `XRANGE` (no group: nothing is acknowledged or
 * claimed by reading). A letter is removed with `XDEL`. A stream that does not exist reads
 * as empty (Redis makes it with its first entry). A replay is an `XADD` to the group's own
 * stream `<topic>.<group>.retry`, which only that group's subscriptions read beside the topic.
 */
export async function redisDeadLetters (client: Redis, prefix: string, destination: string, maxLen: number | undefined, reason: (err: unknown) => string): Promise<DeadLetterCursor> {
  const stream = prefix + destination
  let after = '-'
  const failed = (what: string, err: unknown): BrokerError => new BrokerError(`could not ${what} the dead-letter stream "${stream}" on Redis: ${reason(err)}`, { cause: err })
  /** The last entry when the pass began: the pass reads no further. */
  let last: string | undefined
  let total: number
  try {
    const [newest, length] = await Promise.all([client.xrevrange(stream, '+', '-', 'COUNT', 1), client.xlen(stream)])
    last = newest[0]?.[0]
    total = length
  } catch (err) {
    throw failed('read', err)
  }
  return {
    total,
    read: async (limit) => {
      if (last === undefined) return []
      let reply: unknown
      try {
        reply = await client.callBuffer('XRANGE', stream, after === '-' ? '-' : `(${after}`, last, 'COUNT', limit)
      } catch (err) {
        throw failed('read', err)
      }
      const out = []
      for (const item of Array.isArray(reply) ? reply as unknown[] : []) {
        if (!Array.isArray(item) || item.length < 2) continue
        const id = text(item[0])
        after = id
        if (!Array.isArray(item[1])) continue
        const entry = decodeEntry(stream, id, item[1] as unknown[])
        out.push({ id, value: entry.value, key: entry.key, headers: entry.headers })
      }
      return out
    },
    remove: async (message) => {
      try {
        await client.xdel(stream, message.id)
      } catch (err) {
        throw failed('remove a letter from', err)
      }
    },
    redeliver: async (message, group) => {
      const target = prefix + groupRetryTopic(message.topic, group)
      try {
        await client.callBuffer('XADD', target, ...xaddArguments(message, maxLen))
      } catch (err) {
        throw new BrokerError(`could not replay a dead letter to the stream "${target}" on Redis: ${reason(err)}`, { cause: err })
      }
    },
    close: async () => {}
  }
}
