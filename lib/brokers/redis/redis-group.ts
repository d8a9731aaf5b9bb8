import type { Redis } from 'ioredis'
import type { Logger } from '../../logger.js'
import type { RedisConnections } from './redis-connection.js'
import { hasPending, isBusyGroup, isNoGroup } from './redis-replies.js'

/** `XGROUP CREATE <stream> <group> 0 MKSTREAM` on every stream: from the earliest entry, the stream too if needed; a group that exists already is fine. */
export async function ensureGroups (client: Redis, streams: readonly string[], group: string): Promise<void> {
  for (const stream of streams) {
    try {
      await client.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    } catch (err) {
      if (!isBusyGroup(err)) throw err
    }
  }
}

/**
 * Removes a consumer's name from the group on each stream where it holds no pending entry,
 * so groups do not collect the names of stopped processes. Where it still holds some
 * (abandoned, or Redis could not be told of a release), the name stays: deleting it would
 * drop those entries from the group for good.
 */
export async function leaveGroup (client: Redis, streams: readonly string[], group: string, consumer: string, connections: RedisConnections, logger: Logger): Promise<void> {
  for (const stream of streams) {
    try {
      if (hasPending(await client.call('XPENDING', stream, group, '-', '+', 1, consumer))) continue
      await client.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
    } catch (err) {
      if (isNoGroup(err)) continue
      logger.debug({ stream, consumer, reason: connections.reason(err) }, 'could not remove the consumer from its group')
    }
  }
}
