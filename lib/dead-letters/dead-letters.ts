/**
 * Acting on a group's dead letters: see them, purge them, replay them to the group that
 * failed (and only to it). Built on the optional `Broker.deadLetters()` cursor, so it works
 * the same on every broker that has one; progress lives in the broker (a letter is removed
 * only once its replay is stored), so running a replay twice replays nothing twice.
 */
import type { Broker, DeadLetterCursor, StoredMessage } from '../brokers/broker.js'
import { ConfigError, ErrorCode, HeraldError } from '../errors.js'
import { deadLetterTopic } from '../runner/dead-letter.js'
import { describeLetter, matches, refusal, replayMessage, type DeadLetter, type LetterFilter } from './letter.js'

export { REPLAY_HEADERS, type DeadLetter, type LetterFilter } from './letter.js'

/** Which dead letters: those of `group` on `topic`, in `<topic>.<group>.dlq` unless `destination` names the handler's own `deadLetter`. */
export interface DeadLetterTarget {
  topic: string
  group: string
  destination?: string
}

export interface ListOptions {
  /** At most this many, oldest first. Default 100. */
  limit?: number
}

export interface PurgeOptions {
  /** Only letters whose reason contains this text, or for which this returns true. */
  filter?: LetterFilter
  /** Count what would be removed, remove nothing. */
  dryRun?: boolean
  /** Remove at most this many. Default: all. */
  limit?: number
}

export interface ReplayOptions {
  filter?: LetterFilter
  /** Count what would be replayed, by reason; send and remove nothing. */
  dryRun?: boolean
  /** Replay at most this many. Default: all. */
  limit?: number
  /** At most this many letters per second. Default: as fast as the broker confirms. */
  rate?: number
  /** Refuse a letter already replayed this many times (`herald-replay-count`). Default 5. */
  maxReplays?: number
}

/** What a purge or replay did (or, with `dryRun`, would do). */
export interface DeadLetterOutcome {
  dryRun: boolean
  /** Letters purged or replayed. */
  count: number
  /** The same, counted by reason. */
  byReason: Record<string, number>
  /** Letters a replay left where they are, and why (a purge refuses none). */
  refused: Array<{ id: string, reason: string }>
}

export const DEFAULT_MAX_REPLAYS = 5
const DEFAULT_LIST_LIMIT = 100
/** Letters read from the broker at a time. */
const BATCH = 100

export class DeadLetters {
  readonly topic: string
  readonly group: string
  /** Where the letters are. */
  readonly destination: string
  readonly #broker: () => Promise<Broker>

  constructor (broker: () => Promise<Broker>, target: DeadLetterTarget) {
    if (target === null || typeof target !== 'object') throw new ConfigError('deadLetters', 'give { topic, group }, e.g. deadLetters({ topic: "orders", group: "billing" })')
    for (const name of ['topic', 'group'] as const) {
      if (typeof target[name] !== 'string' || target[name] === '') throw new ConfigError(name, `deadLetters() needs the ${name} whose dead letters to read, a non-empty string; got ${JSON.stringify(target[name])}`)
    }
    if (target.destination !== undefined && (typeof target.destination !== 'string' || target.destination === '')) {
      throw new ConfigError('destination', `must be the dead-letter topic's name, got ${JSON.stringify(target.destination)}`)
    }
    this.topic = target.topic
    this.group = target.group
    this.destination = target.destination ?? String(deadLetterTopic(target.topic, target.group, { deadLetter: undefined }))
    this.#broker = broker
  }

  /** The oldest letters, up to `limit`; nothing is consumed or moved. */
  async list (options: ListOptions = {}): Promise<DeadLetter[]> {
    const limit = count('limit', options.limit) ?? DEFAULT_LIST_LIMIT
    return await this.#pass(async (cursor) => {
      const out: DeadLetter[] = []
      while (out.length < limit) {
        const batch = await cursor.read(Math.min(BATCH, limit - out.length))
        if (batch.length === 0) break
        out.push(...batch.map(describeLetter))
      }
      return out
    })
  }

  /** How many letters there are now, when the broker tells (an adapter of your own may not). Reads none of them. */
  async count (): Promise<number | undefined> {
    return await this.#pass(async (cursor) => cursor.total)
  }

  /** Removes the letters that match `filter` (all without one); `dryRun` only counts them. */
  async purge (options: PurgeOptions = {}): Promise<DeadLetterOutcome> {
    const limit = count('limit', options.limit) ?? Infinity
    const outcome = emptyOutcome(options.dryRun === true)
    await this.#pass(async (cursor) => {
      await each(cursor, limit, outcome, async (stored, letter) => {
        if (!matches(letter, options.filter)) return false
        if (!outcome.dryRun) await cursor.remove(stored)
        return true
      })
    })
    return outcome
  }

  /**
   * Sends the letters that match back to the group that failed, only to it, oldest first:
   * body and key unchanged, the `herald-dlq-*` headers removed, `herald-replayed-from` and
   * `herald-replay-count` set. Each letter is removed once the broker stored its replay, so
   * a second run (or one resumed after an interruption) does not replay it again.
   */
  async replay (options: ReplayOptions = {}): Promise<DeadLetterOutcome> {
    const limit = count('limit', options.limit) ?? Infinity
    const rate = positive('rate', options.rate)
    const maxReplays = count('maxReplays', options.maxReplays, 0) ?? DEFAULT_MAX_REPLAYS
    const outcome = emptyOutcome(options.dryRun === true)
    await this.#pass(async (cursor, kind) => {
      if (cursor.redeliver === undefined) throw this.#unsupported('replay', kind)
      const redeliver = cursor.redeliver.bind(cursor)
      let last = 0
      await each(cursor, limit, outcome, async (stored, letter) => {
        if (!matches(letter, options.filter)) return false
        const why = refusal(letter, this.topic, this.group, maxReplays)
        if (why !== undefined) {
          outcome.refused.push({ id: letter.id, reason: why })
          return false
        }
        if (outcome.dryRun) return true
        if (rate !== undefined) {
          const wait = last + 1000 / rate - Date.now()
          if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
          last = Date.now()
        }
        await redeliver(replayMessage(stored, letter, this.topic, this.destination), this.group)
        await cursor.remove(stored)
        return true
      })
    })
    return outcome
  }

  async #pass<T> (work: (cursor: DeadLetterCursor, kind: string) => Promise<T>): Promise<T> {
    const broker = await this.#broker()
    if (broker.deadLetters === undefined) throw this.#unsupported('read', broker.kind)
    const cursor = await broker.deadLetters(this.destination)
    try {
      return await work(cursor, broker.kind)
    } finally {
      await cursor.close()
    }
  }

  #unsupported (what: 'read' | 'replay', kind: string): HeraldError {
    const message = what === 'read'
      ? `the ${kind} adapter cannot read dead letters (it has no deadLetters()); read "${this.destination}" with a handler instead`
      : `the ${kind} adapter cannot replay dead letters to one group only (its dead-letter cursor has no redeliver()): nothing was replayed; list them, fix the cause, and publish them again yourself`
    return new HeraldError(message, { code: ErrorCode.Unsupported })
  }
}

/** Reads every letter (up to `limit` counted), calling `act`; counts those it returns true for. */
async function each (cursor: DeadLetterCursor, limit: number, outcome: DeadLetterOutcome, act: (stored: StoredMessage, letter: DeadLetter) => Promise<boolean>): Promise<void> {
  while (outcome.count < limit) {
    const batch = await cursor.read(BATCH)
    if (batch.length === 0) return
    for (const stored of batch) {
      const letter = describeLetter(stored)
      if (!await act(stored, letter)) continue
      outcome.count++
      outcome.byReason[letter.reason] = (outcome.byReason[letter.reason] ?? 0) + 1
      if (outcome.count >= limit) return
    }
  }
}

function emptyOutcome (dryRun: boolean): DeadLetterOutcome {
  return { dryRun, count: 0, byReason: {}, refused: [] }
}

function count (option: string, value: number | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isInteger(value) || value < min) throw new ConfigError(option, `must be a whole number of at least ${min}, got ${JSON.stringify(value)}`)
  return value
}

function positive (option: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new ConfigError(option, `must be a number of letters per second above 0, e.g. 10; got ${JSON.stringify(value)}`)
  return value
}
