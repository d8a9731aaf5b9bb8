import type { Redis } from 'ioredis'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Backoff, sleep } from '../../time.js'
import type { DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { InFlight } from '../shared/in-flight.js'
import { groupRetryTopic } from '../shared/group-destination.js'
import type { RedisConnections } from './redis-connection.js'
import { RedisAcks } from './redis-acks.js'
import { RedisDelivery, type DeliveryOwner } from './redis-delivery.js'
import { HeldEntries, RedisHolds, type Held } from './redis-holds.js'
import { RedisReader } from './redis-reader.js'
import { RedisReclaim, type Claimed } from './redis-reclaim.js'
import { ensureGroups, leaveGroup } from './redis-group.js'
import { isNoGroup } from './redis-replies.js'

/** Longest a blocking read waits before the loop looks again (reclaim due, pause asked). */
const BLOCK_MS = 1000
/**
 * The most entries read ahead, unless `maxInFlight` is more: a read of 100 entries costs
 * about what one of 20 does (a round trip each way, and an XACK for what it read).
 */
export const MAX_READ_AHEAD = 100
/** How long stopping waits for a read on its way before dropping its connection. */
const STOP_READ_MS = BLOCK_MS + 500

export interface RedisSubscriptionParams {
  /** Commands that do not block: XACK, XAUTOCLAIM, XPENDING, XGROUP, the hold script. */
  client: Redis
  /** This subscription's own connection, for XREADGROUP … BLOCK. */
  blocking: Redis
  connections: RedisConnections
  logger: Logger
  prefix: string
  consumer: string
  claimIdleMs: number
  options: SubscribeOptions
  onDelivery: DeliveryHandler
  onClosed: () => void
}

/**
 * One consumer (a unique name) of a Redis stream group, reading the group's topics.
 *
 * - A loop reads (redis-reader.ts) a full read-ahead at a time into a backlog of at most
 *   that many entries, and hands entries to `onDelivery` in stream order without waiting,
 *   never more than `maxInFlight` unsettled. The read-ahead is `maxWaiting` (what the
 *   runner takes unsettled beyond `maxInFlight`; RabbitMQ's prefetch counts it too), at
 *   most {@link MAX_READ_AHEAD}, at least `maxInFlight`.
 * - Before reading, and every `claimIdleMs` (at most every 5 s), it takes over the entries
 *   other consumers of the group left pending too long (redis-reclaim.ts).
 * - While it holds entries it refreshes their idle time every third of `claimIdleMs`
 *   (redis-holds.ts), so a slow handler or a long retry delay never lets another consumer
 *   take them.
 * - `ack()` is `XACK`, one per stream for the acks of one tick (redis-acks.ts); its room
 *   goes to the next entry at once. `release()` marks the entry idle since the epoch: the next
 *   reclaim of any consumer of the group, this one included, delivers it again.
 */
export class RedisSubscription implements Subscription {
  readonly #p: RedisSubscriptionParams
  readonly #streams: string[]
  /** How many topics (the streams are each topic's and its retry stream): a read asks each for its share of the room. */
  readonly #topics: number
  readonly #topicOf = new Map<string, string>()
  /** How many entries one read asks for (over all topics), and the most the backlog holds. */
  readonly #readAhead: number
  readonly #reader: RedisReader
  readonly #reclaim: RedisReclaim
  readonly #holds: RedisHolds
  readonly #acks: RedisAcks
  readonly #held: HeldEntries
  /** Handed over and not settled yet, Redis' answer to a settle included: what `close()` waits for. */
  readonly #unsettled = new InFlight()
  /** Handed over and neither acked nor released yet: what `maxInFlight` limits (an XACK on its way takes no room). */
  #handling = 0
  /** Of `#handling`, those waiting for a retry: not counted against `maxInFlight`. */
  #retrying = 0
  readonly #stopping = new AbortController()
  /** What every delivery of this subscription calls back. */
  readonly #owner: DeliveryOwner = {
    ack: held => this.#ack(held),
    release: held => this.#release(held),
    keepAlive: held => this.#keepAlive(held),
    waiting: (held, on) => this.#waiting(held, on)
  }
  #loop: Promise<void> | undefined
  #wake: (() => void) | undefined
  #stopped: Promise<void> | undefined
  #closed: Promise<void> | undefined
  #abandoned = false
  /**
   * An entry delivered before without being settled (a worker died on it?) is handed over
   * alone: nothing else is in flight while it runs, so if it kills this worker too, only its
   * own delivery count grows, not that of the entries around it.
   */
  #suspect: string | undefined

  constructor (params: RedisSubscriptionParams) {
    this.#p = params
    const topics = [...new Set(params.options.topics)]
    this.#topics = topics.length
    const { maxInFlight, maxWaiting } = params.options
    this.#readAhead = Math.max(maxInFlight, Math.min(maxWaiting ?? maxInFlight, MAX_READ_AHEAD))
    // Each topic's stream, then the group's own retry stream of each (dead letters replayed to this group only).
    const retries = topics.map(t => params.prefix + groupRetryTopic(t, params.options.group))
    this.#streams = [...topics.map(t => params.prefix + t), ...retries]
    topics.forEach((t, i) => {
      this.#topicOf.set(this.#streams[i]!, t)
      this.#topicOf.set(retries[i]!, t)
    })
    const { client, blocking, connections, logger, consumer, claimIdleMs, options: { group } } = params
    this.#reader = new RedisReader({ blocking, client, connections, logger, group, consumer, streams: this.#streams })
    this.#held = new HeldEntries(this.#topicOf)
    this.#holds = new RedisHolds({ client, connections, logger, group, consumer, topicOf: this.#topicOf })
    this.#reclaim = new RedisReclaim({ client, logger, group, consumer, claimIdleMs, streams: this.#streams, topicOf: this.#topicOf, holds: this.#holds })
    this.#acks = new RedisAcks(client, group)
  }

  get consumer (): string {
    return this.#p.consumer
  }

  get #isStopping (): boolean {
    return this.#stopping.signal.aborted
  }

  /** Creates the group on every stream (from the earliest entry; the stream too if needed) and starts the loop. */
  async start (): Promise<void> {
    await ensureGroups(this.#p.client, this.#streams, this.#p.options.group)
    this.#holds.startRefreshing(Math.max(Math.floor(this.#p.claimIdleMs / 3), 10), this.#streams,
      stream => this.#held.refreshable(stream), (stream, id) => this.#held.stillHeld(stream, id))
    this.#loop = this.#run()
  }

  async pause (): Promise<void> {
    await this.#stop()
  }

  async close (): Promise<void> {
    this.#closed ??= this.#close()
    return await this.#closed
  }

  /**
   * Closes without waiting for handed-over entries to settle (the broker is closing).
   * What they hold stays pending in the group and is reclaimed by another consumer.
   */
  async abandon (): Promise<void> {
    this.#abandoned = true
    this.#unsettled.abandon()
    await this.close()
  }

  async #close (): Promise<void> {
    await this.#stop()
    if (!this.#abandoned) await this.#unsettled.idle()
    this.#holds.stopRefreshing()
    try {
      await leaveGroup(this.#p.client, this.#streams, this.#p.options.group, this.#p.consumer, this.#p.connections, this.#p.logger)
    } finally {
      this.#reader.disconnect()
      this.#p.onClosed()
    }
  }

  /** Stops reading and reclaiming; gives back what was read but never handed over. */
  async #stop (): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping.abort()
      this.#wake?.()
      await this.#reader.interrupt()
      await this.#reader.stop(this.#loop ?? Promise.resolve(), STOP_READ_MS)
      await this.#holds.giveBack(this.#held.backlog.splice(0).map(h => h.entry), 'unread')
    })()
    await this.#stopped
  }

  /**
   * How many more entries this consumer may take: up to `maxInFlight` handed over (retries
   * waiting aside) plus up to the read-ahead in the backlog, so the next entries are here
   * when a handler finishes instead of one read round trip later.
   */
  #room (): number {
    return this.#p.options.maxInFlight + this.#readAhead - (this.#handling - this.#retrying) - this.#held.backlog.length
  }

  /**
   * A read waits until it can ask for a full read-ahead: reads of one or two entries as
   * each handler finishes cost a round trip each, while what is held (at most
   * `maxInFlight` then) keeps the handlers busy meanwhile.
   */
  #roomToRead (): boolean {
    return this.#room() >= this.#readAhead
  }

  async #run (): Promise<void> {
    const backoff = new Backoff(200, 5000)
    let failures = 0
    while (!this.#isStopping) {
      try {
        this.#handOverBacklog()
        // No read while an entry delivered before runs alone: if it kills this worker, what was read meanwhile would be redelivered with it.
        if (!this.#roomToRead() || this.#suspect !== undefined) {
          await new Promise<void>(resolve => { this.#wake = resolve })
          this.#wake = undefined
          continue
        }
        if (Date.now() >= this.#reclaim.dueAt) await this.#takeOver()
        else await this.#read()
        failures = 0
        backoff.reset()
      } catch (err) {
        if (this.#isStopping) break
        if (isNoGroup(err)) {
          // The stream (and with it the group) was deleted under us: start again from whatever it holds now.
          this.#p.logger.warn({ group: this.#p.options.group, topics: [...this.#topicOf.values()], reason: this.#p.connections.reason(err) },
            'a stream or its consumer group disappeared (deleted?); creating the group again')
          try {
            await ensureGroups(this.#p.client, this.#streams, this.#p.options.group)
            continue
          } catch (again) {
            err = again
          }
        }
        failures++
        const fields = { group: this.#p.options.group, consumer: this.#p.consumer, reason: this.#p.connections.reason(err) }
        // During an outage the connection watch has already said so; one line per failure streak otherwise.
        if (failures === 1 && !this.#p.connections.outage) this.#p.logger.warn(fields, 'reading from Redis failed; retrying')
        else this.#p.logger.debug(fields, 'reading from Redis failed; retrying')
        await sleep(backoff.next(), this.#stopping.signal)
      }
    }
  }

  async #read (): Promise<void> {
    const count = Math.max(1, Math.ceil(Math.min(this.#room(), this.#readAhead) / this.#topics))
    const block = Math.max(1, Math.min(BLOCK_MS, this.#reclaim.dueAt - Date.now()))
    const reply = await this.#reader.read(count, block)
    for (const { stream, entries } of reply) for (const raw of entries) this.#held.add(stream, raw, 0)
    // Stopped while reading: #stop gives the backlog back once the loop ended.
    this.#handOverBacklog()
  }


  /** Takes over entries left pending too long by any consumer of the group (a crashed one, or given back). */
  async #takeOver (): Promise<void> {
    if (this.#suspect !== undefined || this.#held.backlog.some(h => h.redeliveries > 0)) {
      // Nothing more until the entry delivered before is settled (which reclaims at once).
      this.#reclaim.later()
      return
    }
    const room = (): number => this.#isStopping ? 0 : Math.min(this.#room(), this.#p.options.maxInFlight)
    await this.#reclaim.pass(room, stream => this.#held.ids(stream), (stream: string, claimed: Claimed[]) => {
      for (const c of claimed) this.#held.add(stream, c.raw, c.redeliveries)
      this.#handOverBacklog()
    })
  }

  #handOverBacklog (): void {
    const { maxInFlight } = this.#p.options
    while (this.#held.backlog.length > 0 && this.#handling - this.#retrying < maxInFlight && !this.#isStopping && this.#suspect === undefined) {
      const next = this.#held.backlog[0]!
      if (next.redeliveries > 0 && this.#unsettled.count > 0) return
      // Marked before it is handed over: a handler that settles at once hands over the next from inside.
      if (next.redeliveries > 0) this.#suspect = next.entry.id
      this.#handOver(this.#held.backlog.shift()!)
    }
  }

  #handOver (held: Held): void {
    const { entry, topic } = held
    const { logger } = this.#p
    this.#held.handedOver(held)
    held.settle = this.#unsettled.add()
    this.#handling++
    if (entry.problem !== undefined) logger.warn({ topic, id: entry.id }, `stream entry is not as Herald writes it: ${entry.problem}`)
    const delivery = new RedisDelivery(held, this.#owner)
    try {
      Promise.resolve(this.#p.onDelivery(delivery)).catch((err: unknown) => logger.error({ err, id: delivery.id }, 'delivery handler rejected; it must settle the message instead'))
    } catch (err) {
      logger.error({ err, id: delivery.id }, 'delivery handler threw; it must settle the message instead')
    }
  }

  /** Acked or released: its room goes to the next entry now, while Redis is told. */
  #settling (held: Held): void {
    held.settling = true
    this.#handling--
    if (held.retrying === true) this.#retrying--
    held.retrying = false
    this.#handOverBacklog()
    this.#wake?.()
  }

  /** Settled, and Redis answered. */
  #done (held: Held): void {
    this.#held.forget(held)
    held.settle?.()
    if (this.#suspect === held.entry.id) {
      this.#suspect = undefined
      // What was given back while it ran alone is taken over again now.
      this.#reclaim.soon()
    }
    this.#wake?.()
  }

  async #ack (held: Held): Promise<void> {
    if (held.settling === true) return
    this.#settling(held)
    const { entry, topic } = held
    try {
      await this.#acks.ack(entry.stream, entry.id)
    } catch (err) {
      // Still pending in the group: once this consumer stops refreshing it, it is reclaimed and delivered again.
      throw new BrokerError(`could not acknowledge stream entry ${topic}@${entry.id} on Redis: ${this.#p.connections.reason(err)}`, { cause: err })
    } finally {
      this.#done(held)
    }
  }

  async #release (held: Held): Promise<void> {
    if (held.settling === true) return
    this.#settling(held)
    try {
      await this.#holds.giveBack([held.entry], 'release')
    } finally {
      this.#done(held)
    }
    // Deliver it again soon, from here if this subscription still reads: cut the blocking read short to reclaim now.
    this.#reclaim.soon(held.entry.stream)
    if (!this.#isStopping) void this.#reader.interrupt()
  }

  async #keepAlive (held: Held): Promise<void> {
    if (held.settling === true) return
    await this.#holds.hold(held.entry.stream, [held.entry.id], 'touch')
  }

  #waiting (held: Held, on: boolean): void {
    if (held.settling === true || (held.retrying === true) === on) return
    held.retrying = on
    this.#retrying += on ? 1 : -1
    if (on) {
      this.#handOverBacklog()
      this.#wake?.()
    }
  }
}
