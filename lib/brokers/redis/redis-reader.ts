import type { Redis } from 'ioredis'
import type { Logger } from '../../logger.js'
import { settledWithin } from '../../time.js'
import type { RedisConnections } from './redis-connection.js'
import { parseClientId, parseReadReply, type RawEntry } from './redis-replies.js'

/** A blocking read that outlives its BLOCK by this much is on a dead connection (half-open TCP). */
export const STALE_READ_GRACE_MS = 10_000
/** How often an unblock is tried while the read it targets is not blocking yet. */
const UNBLOCK_ATTEMPTS = 5
const UNBLOCK_RETRY_MS = 50

export interface RedisReaderParams {
  /** The subscription's own connection: only its reads block on it. */
  blocking: Redis
  /** The shared connection, for CLIENT UNBLOCK. */
  client: Redis
  connections: RedisConnections
  logger: Logger
  group: string
  consumer: string
  streams: readonly string[]
}

/**
 * Reads new entries for one consumer with `XREADGROUP … BLOCK` on its own connection, and
 * can cut a blocking read short (`CLIENT UNBLOCK … TIMEOUT`) when the loop must look again.
 */
export class RedisReader {
  readonly #p: RedisReaderParams
  readonly #newOnly: string[]
  #reading: Promise<unknown> | undefined
  /** The blocking connection's CLIENT ID, asked once per connection (a reconnect makes a new one). */
  #blockingId: number | undefined
  #askedId = false
  #canUnblock = true

  constructor (params: RedisReaderParams) {
    this.#p = params
    this.#newOnly = params.streams.map(() => '>')
    params.blocking.on('close', () => {
      this.#blockingId = undefined
      this.#askedId = false
    })
  }

  /** True while a read is on its way. */
  get reading (): boolean {
    return this.#reading !== undefined
  }

  /** One read of at most `count` new entries per stream, waiting up to `blockMs` for the first. */
  async read (count: number, blockMs: number): Promise<Array<{ stream: string, entries: RawEntry[] }>> {
    const { blocking, group, consumer, streams, logger } = this.#p
    if (!this.#askedId) {
      // Sent just before the read on the same connection, so an unblock targets the connection that blocks.
      this.#askedId = true
      blocking.call('CLIENT', 'ID').then(id => { this.#blockingId = parseClientId(id) }, () => { this.#askedId = false })
    }
    const started = Date.now()
    this.#reading = blocking.callBuffer('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', ...streams, ...this.#newOnly)
    let reply: unknown
    try {
      reply = await this.#reading
    } finally {
      this.#reading = undefined
    }
    if (reply === null && Date.now() - started > blockMs + STALE_READ_GRACE_MS / 2 && blocking.status === 'ready') {
      // ioredis gave up waiting (blockingTimeout) for a connection that stays silent: make a new one.
      logger.warn({ consumer }, 'a blocking read on Redis got no answer; reconnecting')
      blocking.disconnect(true)
    }
    return parseReadReply(reply)
  }

  /** Ends a blocking read at once rather than waiting out its BLOCK. */
  async interrupt (): Promise<void> {
    const reading = this.#reading
    if (reading === undefined || !this.#canUnblock) return
    const finished = reading.then(() => true, () => true)
    // The read may not be blocking yet when asked: try a few times, it ends within its BLOCK anyway.
    for (let attempt = 0; attempt < UNBLOCK_ATTEMPTS && this.#reading === reading; attempt++) {
      if (this.#blockingId !== undefined) {
        try {
          await this.#p.client.call('CLIENT', 'UNBLOCK', this.#blockingId, 'TIMEOUT')
        } catch (err) {
          // CLIENT UNBLOCK is an @admin command; a restricted user waits for the read's timeout.
          this.#canUnblock = false
          this.#p.logger.debug({ reason: this.#p.connections.reason(err) }, 'cannot unblock a Redis read; waiting for its timeout')
          return
        }
      }
      await settledWithin(finished, UNBLOCK_RETRY_MS)
    }
  }

  /**
   * Waits up to `ms` for `loop` (the loop that reads) to end; if a read is still queued then
   * (on a connection that is down), drops the connection so that it ends. Whatever Redis may
   * have delivered to that read stays pending under this consumer and is reclaimed after
   * claimIdleMs.
   */
  async stop (loop: Promise<void>, ms: number): Promise<void> {
    const ended = await settledWithin(loop, ms)
    if (!ended && this.#reading !== undefined) this.#p.blocking.disconnect()
    await loop
  }

  disconnect (): void {
    this.#p.blocking.disconnect()
  }
}
