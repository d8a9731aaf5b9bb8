import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from '../../logger.js'
import type { RedisConnections } from './redis-connection.js'
import { isNoScript, parseHoldStates, type RawEntry } from './redis-replies.js'
import { decodeEntry, type StreamEntry } from './redis-stream.js'

/** What {@link HOLD_SCRIPT} did with an entry. */
export const HOLD_STATE = { notHeld: 0, held: 1, deleted: 2 } as const

/**
 * Acts on entries only while this consumer still holds them (another consumer may have
 * reclaimed one meanwhile; a plain XCLAIM would steal it back). Modes:
 * - `touch`: resets the idle time, so a live consumer keeps what it is working on.
 * - `release`: marks the entry idle since the epoch, so the next XAUTOCLAIM of any
 *   consumer of the group takes it at once, and takes back the delivery count its read or
 *   claim added: a message given back unhandled (a shutdown) has not used up an attempt.
 * - `unread`: the same, for an entry read but never handed over.
 * Replies one state per id: 0 not held, 1 done, 2 the entry was deleted from the stream
 * (Redis 7 then drops it from the pending list).
 */
export const HOLD_SCRIPT = `
local stream, group, consumer, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local states = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, id, id, 1, consumer)[1]
  local state = 0
  if pending then
    local args = { 'XCLAIM', stream, group, consumer, 0, id }
    if mode ~= 'touch' then
      args[#args + 1] = 'TIME'
      args[#args + 1] = 0
    end
    if mode ~= 'touch' and pending[4] > 0 then
      args[#args + 1] = 'RETRYCOUNT'
      args[#args + 1] = pending[4] - 1
    end
    args[#args + 1] = 'JUSTID'
    local claimed = redis.call(unpack(args))
    if #claimed > 0 then state = 1 else state = 2 end
  end
  states[#states + 1] = state
end
return states
`

export type HoldMode = 'touch' | 'release' | 'unread'

const HOLD_SCRIPT_SHA = createHash('sha1').update(HOLD_SCRIPT).digest('hex')
/** Ids per script call, so one call never holds Redis for long. */
const HOLD_BATCH = 200

export interface RedisHoldsParams {
  client: Redis
  connections: RedisConnections
  logger: Logger
  group: string
  consumer: string
  topicOf: ReadonlyMap<string, string>
}

/**
 * What this consumer holds in the group's pending lists: refreshing the entries it works
 * on (so no other consumer reclaims them), and giving back entries it will not handle.
 */
export class RedisHolds {
  readonly #p: RedisHoldsParams
  #timer: NodeJS.Timeout | undefined
  #refreshing = false
  #failing = false

  constructor (params: RedisHoldsParams) {
    this.#p = params
  }

  /**
   * Refreshes, every `everyMs`, the entries `held(stream)` lists; `stillHeld` tells, once the
   * answer is in, whether an entry Redis says is not held any more is still worked on here.
   */
  startRefreshing (everyMs: number, streams: readonly string[], held: (stream: string) => string[], stillHeld: (stream: string, id: string) => boolean): void {
    this.#timer = setInterval(() => { void this.#refresh(streams, held, stillHeld) }, everyMs)
    this.#timer.unref()
  }

  stopRefreshing (): void {
    clearInterval(this.#timer)
  }

  /** Runs the hold script on ids of one stream; one state per id (see {@link HOLD_SCRIPT}). */
  async hold (stream: string, ids: string[], mode: HoldMode): Promise<number[]> {
    const { client, group, consumer } = this.#p
    const states: number[] = []
    for (let i = 0; i < ids.length; i += HOLD_BATCH) {
      const args = [stream, group, consumer, mode, ...ids.slice(i, i + HOLD_BATCH)]
      let reply: unknown
      try {
        reply = await client.call('EVALSHA', HOLD_SCRIPT_SHA, 1, ...args)
      } catch (err) {
        if (!isNoScript(err)) throw err
        reply = await client.call('EVAL', HOLD_SCRIPT, 1, ...args)
      }
      states.push(...parseHoldStates(reply))
    }
    return states
  }

  /**
   * Gives entries back to the group: they stay pending under this consumer's name, marked
   * idle since long ago, so the next XAUTOCLAIM of any consumer of the group takes them.
   * If Redis cannot be told, they are reclaimed once `claimIdleMs` has passed.
   */
  async giveBack (entries: ReadonlyArray<{ stream: string, id: string }>, mode: 'release' | 'unread'): Promise<void> {
    const byStream = new Map<string, string[]>()
    for (const e of entries) {
      const ids = byStream.get(e.stream)
      if (ids === undefined) byStream.set(e.stream, [e.id])
      else ids.push(e.id)
    }
    for (const [stream, ids] of byStream) {
      try {
        await this.hold(stream, ids, mode)
      } catch (err) {
        this.#p.logger.debug({ topic: this.#p.topicOf.get(stream), reason: this.#p.connections.reason(err) },
          'could not give entries back at once; they are reclaimed after claimIdleMs')
      }
    }
  }

  async #refresh (streams: readonly string[], held: (stream: string) => string[], stillHeld: (stream: string, id: string) => boolean): Promise<void> {
    if (this.#refreshing) return
    this.#refreshing = true
    const { logger, connections, consumer, topicOf } = this.#p
    try {
      for (const stream of streams) {
        const ids = held(stream)
        if (ids.length === 0) continue
        const states = await this.hold(stream, ids, 'touch')
        // An entry acked while the refresh was on its way (after an outage, the refresh may even
        // run after the XACK: Redis forgot the script and it is sent again) is not held any more,
        // rightly: only an entry still handled here and not held is another consumer's doing.
        const lost = ids.filter((id, i) => states[i] === HOLD_STATE.notHeld && stillHeld(stream, id))
        if (lost.length > 0) {
          logger.warn({ topic: topicOf.get(stream), ids: lost, consumer },
            'another consumer of the group took over entries this one still holds; they may be handled twice')
        }
      }
      this.#failing = false
    } catch (err) {
      // Once per failure streak, and not during an outage (already logged): a refused script (ACL) must be seen.
      const fields = { consumer, reason: connections.reason(err) }
      const message = 'could not refresh the entries this consumer holds; other consumers may take them over after claimIdleMs'
      if (this.#failing || connections.outage) logger.debug(fields, message)
      else logger.warn(fields, message)
      this.#failing = true
    } finally {
      this.#refreshing = false
    }
  }
}

/** An entry this consumer holds: read into its pending list, handed over or waiting for room. */
export interface Held {
  entry: StreamEntry
  topic: string
  redeliveries: number
  /** Being acked or released: no longer refreshed, so a release is not undone by a refresh racing it. */
  settling?: boolean
  /** Handed over and waiting for a retry (not counted against `maxInFlight`). */
  retrying?: boolean
  /** Counts it out of what closing waits for, once settled and answered (set when handed over). */
  settle?: () => void
}

/** The entries one subscription holds: handed over (per stream), and read but not handed over yet (the backlog). */
export class HeldEntries {
  /** Read or reclaimed, not yet handed over, in stream order. */
  readonly backlog: Held[] = []
  readonly #handedOver = new Map<string, Map<string, Held>>()
  readonly #topicOf: ReadonlyMap<string, string>

  constructor (topicOf: ReadonlyMap<string, string>) {
    this.#topicOf = topicOf
    for (const stream of topicOf.keys()) this.#handedOver.set(stream, new Map())
  }

  /** Adds a read or reclaimed entry to the backlog (an entry deleted from the stream, with no fields, is skipped). */
  add (stream: string, raw: RawEntry, redeliveries: number): void {
    const topic = this.#topicOf.get(stream)
    if (topic === undefined || raw.fields === null) return
    this.backlog.push({ entry: decodeEntry(stream, raw.id, raw.fields), topic, redeliveries })
  }

  handedOver (held: Held): void {
    this.#handedOver.get(held.entry.stream)!.set(held.entry.id, held)
  }

  /** Settled, and Redis answered. */
  forget (held: Held): void {
    this.#handedOver.get(held.entry.stream)!.delete(held.entry.id)
  }

  /** Every id held on a stream (its own entries come back from a reclaim if a refresh came late). */
  ids (stream: string): Set<string> {
    return new Set([...this.#handedOver.get(stream)!.keys(), ...this.backlog.filter(h => h.entry.stream === stream).map(h => h.entry.id)])
  }

  /** What the refresh keeps held on a stream: handed over and not settling, or in the backlog. */
  refreshable (stream: string): string[] {
    const ids: string[] = []
    for (const held of this.#handedOver.get(stream)!.values()) if (held.settling !== true) ids.push(held.entry.id)
    for (const held of this.backlog) if (held.entry.stream === stream) ids.push(held.entry.id)
    return ids
  }

  /** True while the entry is still worked on or waiting here. */
  stillHeld (stream: string, id: string): boolean {
    const held = this.#handedOver.get(stream)!.get(id)
    return (held !== undefined && held.settling !== true) || this.backlog.some(h => h.entry.stream === stream && h.entry.id === id)
  }
}
