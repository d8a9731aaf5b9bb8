import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from '../../logger.js'
import type { OutgoingMessage } from '../broker.js'
import { groupRetryTopic } from '../shared/group-destination.js'
import { xaddArguments } from './redis-stream.js'

/** How often a subscription moves the retries that are due into its group's retry streams. */
export const PROMOTE_EVERY_MS = 1000
/** Retries moved by one script call; a call that moved this many is followed by another at once. */
const PROMOTE_BATCH = 100

/**
 * The sorted set of a group's retries of a topic waiting in Redis (`durableRetryAfter`):
 * `<topic>.<group>.retry.due`, score = when it is due (epoch ms).
 */
export function retryDueKey (prefix: string, topic: string, group: string): string {
  return `${prefix}${groupRetryTopic(topic, group)}.due`
}

/**
 * A member of the due set: the `XADD` arguments of the entry, as it will be stored in the
 * group's retry stream, each as `<bytes>:<value>` (netstring-like, so a binary body
 * survives), after a random token that keeps two equal retries apart.
 */
function encodeMember (args: Array<string | Buffer | number>): Buffer {
  const parts: Buffer[] = []
  for (const arg of [randomBytes(8).toString('hex'), ...args]) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg))
    parts.push(Buffer.from(`${bytes.length}:`), bytes)
  }
  return Buffer.concat(parts)
}

/** Stores a retry in the due set; resolves once Redis replied to the `ZADD`. */
export async function scheduleRedisRetry (client: Redis, prefix: string, group: string, message: OutgoingMessage, dueAt: number, maxLen: number | undefined): Promise<void> {
  await client.zadd(retryDueKey(prefix, message.topic, group), dueAt, encodeMember(xaddArguments(message, maxLen)))
}

/**
 * Atomically moves the due retries (score ≤ now) of one due set into the group's retry
 * stream: XADD each, then ZREM it, in one script, so a retry is never in both or in
 * neither, whichever consumers of the group run it at once.
 */
const PROMOTE_SCRIPT = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local args = {}
  local pos = 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    local len = tonumber(string.sub(member, pos, colon - 1))
    args[#args + 1] = string.sub(member, colon + 1, colon + len)
    pos = colon + len + 1
  end
  table.remove(args, 1)
  redis.call('XADD', KEYS[2], unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
`

/**
 * The timer of one subscription that promotes its group's due retries of each topic into
 * `<topic>.<group>.retry`, which the subscription reads beside the topic. Every consumer of
 * the group runs one: the script is atomic, so they never promote a retry twice.
 */
export class RedisRetryPromoter {
  readonly #timer: NodeJS.Timeout
  #running = false
  #failing = false

  constructor (client: Redis, prefix: string, group: string, topics: readonly string[], logger: Logger, reason: (err: unknown) => string) {
    const keys = topics.map(t => [retryDueKey(prefix, t, group), prefix + groupRetryTopic(t, group)] as const)
    this.#timer = setInterval(() => {
      if (this.#running) return
      this.#running = true
      void (async () => {
        for (const [due, stream] of keys) {
          let moved = PROMOTE_BATCH
          while (moved === PROMOTE_BATCH) moved = Number(await client.eval(PROMOTE_SCRIPT, 2, due, stream, String(Date.now()), String(PROMOTE_BATCH)))
        }
        this.#failing = false
      })().catch((err: unknown) => {
        // Nothing is lost: the retries stay in the due set until a promotion succeeds.
        if (!this.#failing) logger.warn({ group, reason: reason(err) }, 'could not move due retries into the group\'s retry stream; trying again')
        this.#failing = true
      }).finally(() => { this.#running = false })
    }, PROMOTE_EVERY_MS)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }
}
