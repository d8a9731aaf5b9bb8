import type { Redis } from 'ioredis'
import type { Logger } from '../../logger.js'
import type { RedisHolds } from './redis-holds.js'
import { parseAutoclaimReply, parseDeliveryCount, type RawEntry } from './redis-replies.js'

/** Longest pause between two passes over the group's pending entries. */
const MAX_RECLAIM_INTERVAL_MS = 5000

export interface RedisReclaimParams {
  client: Redis
  logger: Logger
  group: string
  consumer: string
  claimIdleMs: number
  streams: readonly string[]
  topicOf: ReadonlyMap<string, string>
  holds: RedisHolds
}

/** An entry taken over, with how often it was delivered before this delivery. */
export interface Claimed {
  raw: RawEntry
  redeliveries: number
}

/**
 * Takes over with `XAUTOCLAIM` the entries other consumers of the group left pending longer
 * than `claimIdleMs` (those of a crashed process), and those given back (idle since the
 * epoch), every `claimIdleMs` and at most every 5 s, or at once when asked.
 */
export class RedisReclaim {
  readonly #p: RedisReclaimParams
  readonly #cursor = new Map<string, string>()
  readonly #intervalMs: number
  #dueAt = 0

  constructor (params: RedisReclaimParams) {
    this.#p = params
    for (const stream of params.streams) this.#cursor.set(stream, '0-0')
    this.#intervalMs = Math.min(params.claimIdleMs, MAX_RECLAIM_INTERVAL_MS)
  }

  /** When the next pass is due (`Date.now()` clock). */
  get dueAt (): number {
    return this.#dueAt
  }

  /** The next pass is due now; from the start of `stream`'s pending list if given (an entry was just given back). */
  soon (stream?: string): void {
    if (stream !== undefined) this.#cursor.set(stream, '0-0')
    this.#dueAt = 0
  }

  /** No pass before the usual interval. */
  later (): void {
    this.#dueAt = Date.now() + this.#intervalMs
  }

  /**
   * One pass over the streams, claiming at most `room()` entries per call. `mine(stream)`
   * lists what this consumer holds already (its own entries come back if a refresh came
   * late); `take` receives each stream's claims with their delivery counts.
   *
   * Entries delivered before come one at a time (the subscription hands such an entry over
   * alone): the first is taken, the others given back with their count taken back, to be
   * taken over once it is settled.
   */
  async pass (room: () => number, mine: (stream: string) => Set<string>, take: (stream: string, claimed: Claimed[]) => void): Promise<void> {
    const { client, group, consumer, claimIdleMs, logger, topicOf } = this.#p
    let more = false
    for (const stream of this.#p.streams) {
      const count = room()
      if (count <= 0) {
        more = true
        break
      }
      const reply = parseAutoclaimReply(await client.callBuffer('XAUTOCLAIM', stream, group, consumer, claimIdleMs, this.#cursor.get(stream) ?? '0-0', 'COUNT', count))
      this.#cursor.set(stream, reply.cursor)
      if (reply.cursor !== '0-0') more = true
      // Entries deleted from the stream while pending (trimmed, XDEL): nothing left to deliver.
      const gone = [...reply.deleted, ...reply.entries.filter(e => e.fields === null).map(e => e.id)]
      if (gone.length > 0) {
        await client.call('XACK', stream, group, ...gone)
        logger.warn({ topic: topicOf.get(stream), group, ids: gone },
          'pending entries were deleted from the stream before being handled (trimmed or XDEL); acknowledged and skipped')
      }
      const held = mine(stream)
      const claimed = reply.entries.filter(e => e.fields !== null && !held.has(e.id))
      if (claimed.length === 0) continue
      const counts = client.pipeline()
      for (const e of claimed) counts.call('XPENDING', stream, group, e.id, e.id, 1, consumer)
      const results = await counts.exec() ?? []
      logger.info({ topic: topicOf.get(stream), group, consumer, count: claimed.length },
        'took over entries left pending by another consumer or given back')
      // XAUTOCLAIM counted this delivery; what came before it are redeliveries.
      const taken = claimed.map((raw, i) => ({ raw, redeliveries: Math.max(parseDeliveryCount(results[i]?.[1]) - 1, 0) }))
      const first = taken.findIndex(c => c.redeliveries > 0)
      const later = first < 0 ? [] : taken.filter((c, i) => i > first && c.redeliveries > 0)
      if (later.length > 0) await this.#p.holds.giveBack(later.map(c => ({ stream, id: c.raw.id })), 'unread')
      take(stream, taken.filter(c => !later.includes(c)))
    }
    this.#dueAt = more ? Date.now() : Date.now() + this.#intervalMs
  }
}
