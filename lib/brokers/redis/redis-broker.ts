import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { Redis, type RedisOptions as IORedisOptions } from 'ioredis'
import { BrokerError, ErrorCode } from '../../errors.js'
import { childLogger, type Logger } from '../../logger.js'
import type { Broker, BrokerDeps, BrokerHealth, DeadLetterCursor, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription, TopicLag } from '../broker.js'
import { withTimeout } from '../../time.js'
import { checkOutgoing } from '../outgoing-checks.js'
import { brokerClosedError } from '../shared/closed-error.js'
import { DEFAULT_CLAIM_IDLE_MS, type RedisSettings } from './redis-config.js'
import { RedisConnections } from './redis-connection.js'
import { STALE_READ_GRACE_MS } from './redis-reader.js'
import { RedisSubscription } from './redis-subscription.js'
import { xaddArguments } from './redis-stream.js'
import { redisLag } from './redis-lag.js'
import { redisDeadLetters } from './redis-dead-letters.js'
import { RedisRetryPromoter, scheduleRedisRetry } from './redis-retries.js'

/** `code` of the error of a message whose topic's key holds another Redis type than a stream. */
export const NOT_A_STREAM = ErrorCode.NotAStream

/** How long `health()` waits for PING. */
const HEALTH_TIMEOUT_MS = 5000

/**
 * The Redis Streams broker (ioredis). A topic is the stream `${prefix}${topic}`, a group
 * a stream consumer group, a dead-letter destination the stream `<topic>.<group>.dlq`
 * (created by its first entry; a stream keeps its entries whether or not a group reads it).
 *
 * One connection publishes, acknowledges and reclaims; each subscription reads on its own
 * blocking connection. Streams are never trimmed unless `maxLen` is set.
 *
 * @example
 * ```ts
 * const broker = new RedisBroker({ url: 'redis://localhost:6379', prefix: '', options: {} }, { logger, clientId: 'orders' })
 * await broker.connect()
 * await broker.publish([{ topic: 'orders', value: Buffer.from('{}'), headers: {} }])
 * ```
 */
export class RedisBroker implements Broker {
  readonly kind = 'redis' as const
  readonly #settings: RedisSettings
  readonly #clientId: string
  readonly #logger: Logger
  readonly #connections: RedisConnections
  readonly #subscriptions = new Set<RedisSubscription>()
  #client: Redis | undefined
  #connecting: Promise<Redis> | undefined
  #closed = false

  constructor (settings: RedisSettings, deps: BrokerDeps) {
    this.#settings = settings
    this.#clientId = deps.clientId
    this.#logger = childLogger(deps.logger, { broker: 'redis' })
    this.#connections = new RedisConnections(settings.url, settings.options.client?.password, this.#logger, settings.connectTimeout)
  }

  /** Connects the shared connection. Idempotent; after a failure the next call tries again. */
  async connect (): Promise<void> {
    await this.#connected()
  }

  async #connected (): Promise<Redis> {
    if (this.#closed) throw brokerClosedError('Redis')
    this.#connecting ??= (async () => {
      const client = new Redis(this.#settings.url, this.#clientOptions())
      await this.#connections.connect(client, 'connection')
      if (this.#closed) {
        client.disconnect()
        throw brokerClosedError('Redis')
      }
      this.#client = client
      return client
    })()
    try {
      return await this.#connecting
    } catch (err) {
      this.#connecting = undefined
      throw err
    }
  }

  #clientOptions (): IORedisOptions {
    const client = this.#settings.options.client ?? {}
    // RESP2 unless asked: Herald needs nothing from RESP3, and reads replies in the RESP2 shapes.
    const protocol = client.protocol ?? 2
    const options: IORedisOptions = {
      connectionName: this.#clientId.replace(/\s+/g, '-'),
      // ioredis' default (20) keeps a publish waiting about a minute and a half during an outage; this is about 20 s.
      maxRetriesPerRequest: 10,
      ...client,
      protocol,
      lazyConnect: true
    }
    if (protocol === 3) options.replyMapping = 'legacy'
    else delete options.replyMapping
    return options
  }

  async publish (messages: OutgoingMessage[]): Promise<Array<Error | undefined>> {
    if (messages.length === 0) return []
    let client: Redis
    try {
      client = await this.#connected()
    } catch (err) {
      return messages.map(() => err as Error)
    }
    const checked = messages.map(m => checkOutgoing('redis', m))
    const pipeline = client.pipeline()
    for (const c of checked) if (c.error === undefined) pipeline.callBuffer('XADD', this.#settings.prefix + c.message.topic, ...xaddArguments(c.message, this.#settings.options.maxLen))
    let replies: Array<[Error | null, unknown]> | null = []
    try {
      if (checked.some(c => c.error === undefined)) replies = await pipeline.exec()
    } catch (err) {
      const failed = new BrokerError(`could not send to Redis at ${this.#connections.address}: ${this.#connections.reason(err)}`, { cause: err })
      return checked.map(c => c.error ?? failed)
    }
    let next = 0
    return checked.map((c, i) => {
      if (c.error !== undefined) return c.error
      const [err, id] = replies?.[next++] ?? [new BrokerError('Redis sent no reply'), null]
      if (err === null && id !== null && id !== undefined) return undefined
      const reason = err === null ? 'no entry id in the reply' : this.#connections.reason(err)
      const stream = this.#settings.prefix + messages[i]!.topic
      if (/^WRONGTYPE\b/.test(reason)) {
        // This message's key holds something else than a stream: it never will, unless someone deletes it.
        return new BrokerError(`Redis did not take the message for stream "${stream}": ${reason}; the key "${stream}" holds another type than a stream: publish to another topic, or delete that key`, { code: NOT_A_STREAM, retriable: false, cause: err ?? undefined })
      }
      // Refused credentials or permissions: sending again cannot help until someone fixes them.
      const retriable = !/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(reason)
      return new BrokerError(`Redis did not take the message for stream "${stream}": ${reason}`, { retriable, cause: err ?? undefined })
    })
  }

  async subscribe (options: SubscribeOptions, onDelivery: DeliveryHandler): Promise<Subscription> {
    if (options.topics.length === 0) throw new BrokerError(`group "${options.group}" subscribed to no topic; give at least one`, { retriable: false })
    const client = await this.#connected()
    // Unique per subscription, so two in one process (or a restarted one) never share pending entries by accident.
    const consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
    const blocking = client.duplicate({
      connectionName: `${this.#clientId.replace(/\s+/g, '-')}:${consumer}`,
      lazyConnect: true,
      // A blocking read that outlives its BLOCK by this grace is on a silent connection; the loop then reconnects.
      blockingTimeout: STALE_READ_GRACE_MS,
      blockingTimeoutGrace: STALE_READ_GRACE_MS
    })
    try {
      await this.#connections.connect(blocking, `blocking connection of group "${options.group}"`)
    } catch (err) {
      // close() drops the connections still being made: that is the broker closing, not Redis away.
      if (this.#closed) {
        blocking.disconnect()
        throw brokerClosedError('Redis')
      }
      throw err
    }
    if (this.#closed) {
      blocking.disconnect()
      throw brokerClosedError('Redis')
    }
    const logger = childLogger(this.#logger, { group: options.group })
    const sub = new RedisSubscription({
      client,
      blocking,
      connections: this.#connections,
      logger,
      prefix: this.#settings.prefix,
      consumer,
      claimIdleMs: this.#settings.options.claimIdleMs ?? DEFAULT_CLAIM_IDLE_MS,
      options,
      onDelivery,
      onClosed: () => {
        promoter?.stop()
        this.#subscriptions.delete(sub)
      }
    })
    let promoter: RedisRetryPromoter | undefined
    try {
      await sub.start()
    } catch (err) {
      blocking.disconnect()
      // Closed while creating the group: the broker's closing is the reason, as on the other brokers.
      if (this.#closed) throw brokerClosedError('Redis')
      throw new BrokerError(`could not create consumer group "${options.group}" on Redis at ${this.#connections.address}: ${this.#connections.reason(err)}`, { cause: err })
    }
    this.#subscriptions.add(sub)
    promoter = new RedisRetryPromoter(client, this.#settings.prefix, options.group, options.topics, logger, err => this.#connections.reason(err))
    if (this.#closed) {
      await sub.abandon()
      throw brokerClosedError('Redis')
    }
    return sub
  }

  async lag (group: string, topics: readonly string[]): Promise<TopicLag[]> {
    return await redisLag(await this.#connected(), this.#settings.prefix, group, topics)
  }

  /** Reads a dead-letter stream with XRANGE, removes letters with XDEL, replays to the group's own stream (redis-dead-letters.ts). */
  async deadLetters (destination: string): Promise<DeadLetterCursor> {
    return await redisDeadLetters(await this.#connected(), this.#settings.prefix, destination, this.#settings.options.maxLen, err => this.#connections.reason(err))
  }

  /** Stores a retry in the group's due set `<topic>.<group>.retry.due` (redis-retries.ts); the group's subscriptions move it into their retry stream once due. */
  async scheduleRetry (group: string, message: OutgoingMessage, dueAt: number): Promise<void> {
    const client = await this.#connected()
    try {
      await scheduleRedisRetry(client, this.#settings.prefix, group, message, dueAt, this.#settings.options.maxLen)
    } catch (err) {
      throw new BrokerError(`could not store a retry for group "${group}" on Redis at ${this.#connections.address}: ${this.#connections.reason(err)}`, { cause: err })
    }
  }

  async health (): Promise<BrokerHealth> {
    if (this.#closed) return { ok: false, broker: 'redis', detail: `${this.#connections.address}: closed` }
    try {
      const client = await this.#connected()
      await withTimeout(client.ping(), HEALTH_TIMEOUT_MS, () => new BrokerError(`${this.#connections.address}: no answer to PING within ${HEALTH_TIMEOUT_MS} ms`))
      return { ok: true, broker: 'redis', detail: this.#connections.address }
    } catch (err) {
      return { ok: false, broker: 'redis', detail: err instanceof BrokerError ? err.message : `${this.#connections.address}: ${this.#connections.reason(err)}` }
    }
  }

  /**
   * Closes every connection. Open subscriptions stop at once without waiting for their
   * deliveries to settle: what those hold stays pending in the group and is reclaimed by
   * another consumer (close subscriptions first for a clean hand-over).
   */
  async close (): Promise<void> {
    this.#closed = true
    this.#connections.abort()
    await Promise.all([...this.#subscriptions].map(async s => await s.abandon()))
    const client = this.#client ?? await this.#connecting?.catch(() => undefined)
    this.#client = undefined
    if (client === undefined) return
    try {
      await client.quit()
    } catch {
      client.disconnect()
    }
  }
}
