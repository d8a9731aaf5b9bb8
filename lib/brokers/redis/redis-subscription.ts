import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import type { RedisConnections } from './redis-connection.js'
import {
  decodeEntry, HOLD_SCRIPT, HOLD_STATE, isBusyGroup, isNoGroup, isNoScript, parseAutoclaimReply, parseDeliveryCount,
  parseReadReply, type HoldMode, type RawEntry, type StreamEntry
} from './redis-stream.js'

/** Longest a blocking read waits before the loop looks again (reclaim due, pause asked). */
const BLOCK_MS = 1000
/** Longest pause between two passes over the group's pending entries. */
const MAX_RECLAIM_INTERVAL_MS = 5000
/** A blocking read that outlives its BLOCK by this much is on a dead connection (half-open TCP). */
export const STALE_READ_GRACE_MS = 10_000
/** Ids per script call when refreshing or giving back held entries. */
const HOLD_BATCH = 200
const HOLD_SCRIPT_SHA = createHash('sha1').update(HOLD_SCRIPT).digest('hex')

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

/** A held entry: read into this consumer's pending list, handed over or waiting for room. */
interface Held {
  entry: StreamEntry
  topic: string
  redeliveries: number
  /** Being acked or released: no longer refreshed, so a release is not undone by a refresh racing it. */
  settling?: boolean
}

/**
 * One consumer (a unique name) of a Redis stream group, reading the group's topics.
 *
 * - A loop reads with `XREADGROUP … BLOCK` on its own connection, only while fewer than
 *   `maxInFlight` entries are handed over and unsettled, and hands entries to
 *   `onDelivery` in stream order without waiting for them.
 * - Before reading, and every `claimIdleMs` (at most every 5 s), it takes over with
 *   `XAUTOCLAIM` the entries other consumers of the group left pending for longer than
 *   `claimIdleMs`: those of a crashed process, and those given back by `release()`.
 * - While it holds entries it refreshes their idle time every third of `claimIdleMs`,
 *   so a slow handler or a long retry delay never lets another consumer take them.
 * - `ack()` is `XACK`. `release()` marks the entry idle since the epoch: the next
 *   reclaim of any consumer of the group, this one included, delivers it again.
 */
export class RedisSubscription implements Subscription {
  readonly #p: RedisSubscriptionParams
  readonly #streams: string[]
  readonly #topicOf = new Map<string, string>()
  /** Handed over and unsettled, per stream. */
  readonly #inFlight = new Map<string, Map<string, Held>>()
  #inFlightCount = 0
  /** Of `#inFlightCount`, those waiting for a retry: not counted against `maxInFlight`. */
  #retrying = 0
  /** Read or reclaimed, not yet handed over (XREADGROUP's COUNT is per stream, so a read can bring more than there is room for). */
  readonly #backlog: Held[] = []
  readonly #reclaimCursor = new Map<string, string>()
  #reclaimAt = 0
  readonly #reclaimIntervalMs: number
  #stopping = false
  #loop: Promise<void> | undefined
  #reading: Promise<unknown> | undefined
  #blockingId: number | undefined
  #canUnblock = true
  #wake: (() => void) | undefined
  #settledWaiters: Array<() => void> = []
  #heartbeat: NodeJS.Timeout | undefined
  #heartbeatRunning = false
  #heartbeatFailing = false
  #stopped: Promise<void> | undefined
  #closed: Promise<void> | undefined
  #aborted = false
  /**
   * An entry delivered before without being settled (a worker died on it?) is handed over
   * alone: nothing else is in flight while it runs, so if it kills this worker too, only its
   * own delivery count grows, not that of the entries around it.
   */
  #suspect: string | undefined

  constructor (params: RedisSubscriptionParams) {
    this.#p = params
    const topics = [...new Set(params.options.topics)]
    this.#streams = topics.map(t => params.prefix + t)
    topics.forEach((t, i) => {
      this.#topicOf.set(this.#streams[i]!, t)
      this.#inFlight.set(this.#streams[i]!, new Map())
      this.#reclaimCursor.set(this.#streams[i]!, '0-0')
    })
    this.#reclaimIntervalMs = Math.min(params.claimIdleMs, MAX_RECLAIM_INTERVAL_MS)
  }

  get consumer (): string {
    return this.#p.consumer
  }

  /** Creates the group on every stream (from the earliest entry; the stream too if needed) and starts the loop. */
  async start (): Promise<void> {
    await this.#ensureGroups()
    const every = Math.max(Math.floor(this.#p.claimIdleMs / 3), 10)
    this.#heartbeat = setInterval(() => { void this.#refreshHeld() }, every)
    this.#heartbeat.unref()
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
  async abort (): Promise<void> {
    this.#aborted = true
    for (const resolve of this.#settledWaiters.splice(0)) resolve()
    await this.close()
  }

  async #close (): Promise<void> {
    await this.#stop()
    if (!this.#aborted && this.#inFlightCount > 0) await new Promise<void>(resolve => this.#settledWaiters.push(resolve))
    clearInterval(this.#heartbeat)
    try {
      await this.#leaveGroup()
    } finally {
      this.#p.blocking.disconnect()
      this.#p.onClosed()
    }
  }

  /** Stops reading and reclaiming; gives back what was read but never handed over. */
  async #stop (): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true
      this.#wake?.()
      await this.#interruptRead()
      const loop = this.#loop ?? Promise.resolve()
      const ended = await Promise.race([loop.then(() => true), new Promise<false>(resolve => setTimeout(() => resolve(false), BLOCK_MS + 500).unref())])
      if (!ended && this.#reading !== undefined) {
        // A read queued on a connection that is down: drop the connection. Whatever Redis may have
        // delivered to it stays pending under this consumer and is reclaimed after claimIdleMs.
        this.#p.blocking.disconnect()
      }
      await loop
      const leftovers = this.#backlog.splice(0)
      await this.#giveBack(leftovers.map(h => h.entry), 'unread')
    })()
    await this.#stopped
  }

  #room (): number {
    return this.#p.options.maxInFlight - (this.#inFlightCount - this.#retrying) - this.#backlog.length
  }

  async #run (): Promise<void> {
    let failures = 0
    while (!this.#stopping) {
      try {
        this.#handOverBacklog()
        if (this.#room() <= 0) {
          await new Promise<void>(resolve => { this.#wake = resolve })
          this.#wake = undefined
          continue
        }
        if (Date.now() >= this.#reclaimAt) await this.#reclaim()
        else await this.#read()
        failures = 0
      } catch (err) {
        if (this.#stopping) break
        if (isNoGroup(err)) {
          // The stream (and with it the group) was deleted under us: start again from whatever it holds now.
          this.#p.logger.warn({ group: this.#p.options.group, topics: [...this.#topicOf.values()], reason: this.#p.connections.reason(err) },
            'a stream or its consumer group disappeared (deleted?); creating the group again')
          try {
            await this.#ensureGroups()
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
        await this.#sleep(Math.min(100 * 2 ** failures, 5000))
      }
    }
  }

  async #sleep (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, ms)
      this.#wake = () => { clearTimeout(timer); resolve() }
    })
    this.#wake = undefined
  }

  async #read (): Promise<void> {
    const { blocking, options, consumer } = this.#p
    const count = Math.max(1, Math.ceil(this.#room() / this.#streams.length))
    const block = Math.max(1, Math.min(BLOCK_MS, this.#reclaimAt - Date.now()))
    // Sent just before the read on the same connection, so an unblock targets the connection that blocks.
    blocking.call('CLIENT', 'ID').then(id => { this.#blockingId = Number(id) }, () => {})
    const started = Date.now()
    this.#reading = blocking.callBuffer('XREADGROUP', 'GROUP', options.group, consumer, 'COUNT', count, 'BLOCK', block,
      'STREAMS', ...this.#streams, ...this.#streams.map(() => '>'))
    let reply: unknown
    try {
      reply = await this.#reading
    } finally {
      this.#reading = undefined
    }
    const read: Held[] = []
    for (const { stream, entries } of parseReadReply(reply)) {
      for (const raw of entries) {
        const held = this.#toHeld(stream, raw, 0)
        if (held !== undefined) read.push(held)
      }
    }
    if (this.#stopping) {
      await this.#giveBack(read.map(h => h.entry), 'unread')
      return
    }
    this.#backlog.push(...read)
    this.#handOverBacklog()
    if (reply === null && Date.now() - started > block + STALE_READ_GRACE_MS / 2 && blocking.status === 'ready') {
      // ioredis gave up waiting (blockingTimeout) for a connection that stays silent: make a new one.
      this.#p.logger.warn({ consumer }, 'a blocking read on Redis got no answer; reconnecting')
      blocking.disconnect(true)
    }
  }

  #toHeld (stream: string, raw: RawEntry, redeliveries: number): Held | undefined {
    const topic = this.#topicOf.get(stream)
    if (topic === undefined || raw.fields === null) return undefined
    return { entry: decodeEntry(stream, raw.id, raw.fields), topic, redeliveries }
  }

  /** Takes over entries left pending too long by any consumer of the group (a crashed one, or given back). */
  async #reclaim (): Promise<void> {
    const { client, options, consumer, claimIdleMs, logger } = this.#p
    if (this.#suspect !== undefined || this.#backlog.some(h => h.redeliveries > 0)) {
      // Nothing more until the entry delivered before is settled (which reclaims at once).
      this.#reclaimAt = Date.now() + this.#reclaimIntervalMs
      return
    }
    let more = false
    for (const stream of this.#streams) {
      const room = this.#room()
      if (room <= 0 || this.#stopping) {
        more = true
        break
      }
      const cursor = this.#reclaimCursor.get(stream) ?? '0-0'
      const reply = parseAutoclaimReply(await client.callBuffer('XAUTOCLAIM', stream, options.group, consumer, claimIdleMs, cursor, 'COUNT', room))
      this.#reclaimCursor.set(stream, reply.cursor)
      if (reply.cursor !== '0-0') more = true
      // Entries deleted from the stream while pending (trimmed, XDEL): nothing left to deliver.
      const gone = [...reply.deleted, ...reply.entries.filter(e => e.fields === null).map(e => e.id)]
      if (gone.length > 0) {
        await client.call('XACK', stream, options.group, ...gone)
        logger.warn({ topic: this.#topicOf.get(stream), group: options.group, ids: gone },
          'pending entries were deleted from the stream before being handled (trimmed or XDEL); acknowledged and skipped')
      }
      // This consumer's own entries come back too if a refresh came late; they are handed over already.
      const mine = new Set([...this.#inFlight.get(stream)!.keys(), ...this.#backlog.filter(h => h.entry.stream === stream).map(h => h.entry.id)])
      const claimed = reply.entries.filter(e => e.fields !== null && !mine.has(e.id))
      if (claimed.length === 0) continue
      const counts = client.pipeline()
      for (const e of claimed) counts.call('XPENDING', stream, options.group, e.id, e.id, 1, consumer)
      const results = await counts.exec() ?? []
      const taken: Held[] = []
      claimed.forEach((raw, i) => {
        // XAUTOCLAIM counted this delivery; what came before it are redeliveries.
        const deliveries = parseDeliveryCount(results[i]?.[1])
        const entry = this.#toHeld(stream, raw, Math.max(deliveries - 1, 0))
        if (entry !== undefined) taken.push(entry)
      })
      // Entries delivered before come one at a time (see #suspect): keep the first, give the
      // others back with their count taken back, to be taken over once it is settled.
      const first = taken.findIndex(h => h.redeliveries > 0)
      const later = first < 0 ? [] : taken.filter((h, i) => i > first && h.redeliveries > 0)
      if (later.length > 0) await this.#giveBack(later.map(h => h.entry), 'unread')
      this.#backlog.push(...taken.filter(h => !later.includes(h)))
      logger.info({ topic: this.#topicOf.get(stream), group: options.group, consumer, count: claimed.length },
        'took over entries left pending by another consumer or given back')
      this.#handOverBacklog()
    }
    this.#reclaimAt = more ? Date.now() : Date.now() + this.#reclaimIntervalMs
  }

  #handOverBacklog (): void {
    while (this.#backlog.length > 0 && this.#inFlightCount - this.#retrying < this.#p.options.maxInFlight && !this.#stopping && this.#suspect === undefined) {
      const next = this.#backlog[0]!
      if (next.redeliveries > 0 && this.#inFlightCount > 0) return
      this.#handOver(this.#backlog.shift()!)
      if (next.redeliveries > 0) this.#suspect = next.entry.id
    }
  }

  #handOver (held: Held): void {
    const { entry, topic, redeliveries } = held
    const { client, options, logger } = this.#p
    const inFlight = this.#inFlight.get(entry.stream)!
    inFlight.set(entry.id, held)
    this.#inFlightCount++
    if (entry.problem !== undefined) logger.warn({ topic, id: entry.id }, `stream entry is not as Herald writes it: ${entry.problem}`)
    let settled = false
    let retrying = false
    const done = (): void => {
      if (retrying) this.#retrying--
      retrying = false
      if (inFlight.delete(entry.id)) this.#inFlightCount--
      if (this.#suspect === entry.id) {
        this.#suspect = undefined
        // What was given back while it ran alone is taken over again now.
        this.#reclaimAt = 0
      }
      this.#wake?.()
      if (this.#inFlightCount === 0) for (const resolve of this.#settledWaiters.splice(0)) resolve()
    }
    const delivery: Delivery = {
      topic,
      value: entry.value,
      key: entry.key,
      headers: { ...entry.headers },
      redeliveries,
      id: `${topic}@${entry.id}`,
      ack: async () => {
        if (settled) return
        settled = true
        held.settling = true
        try {
          await client.call('XACK', entry.stream, options.group, entry.id)
        } catch (err) {
          // Still pending in the group: once this consumer stops refreshing it, it is reclaimed and delivered again.
          throw new BrokerError(`could not acknowledge stream entry ${topic}@${entry.id} on Redis: ${this.#p.connections.reason(err)}`, { cause: err })
        } finally {
          done()
        }
      },
      release: async () => {
        if (settled) return
        settled = true
        held.settling = true
        try {
          await this.#giveBack([entry], 'release')
        } finally {
          done()
        }
        // Deliver it again soon, from here if this subscription still reads: cut the blocking read short to reclaim now.
        this.#reclaimCursor.set(entry.stream, '0-0')
        this.#reclaimAt = 0
        if (!this.#stopping) void this.#interruptRead()
      },
      keepAlive: async () => {
        if (settled) return
        await this.#hold(entry.stream, [entry.id], 'touch')
      },
      waiting: (on) => {
        if (settled || retrying === on) return
        retrying = on
        this.#retrying += on ? 1 : -1
        if (on) {
          this.#handOverBacklog()
          this.#wake?.()
        }
      }
    }
    try {
      Promise.resolve(this.#p.onDelivery(delivery)).catch((err: unknown) => logger.error({ err, id: delivery.id }, 'delivery handler rejected; it must settle the message instead'))
    } catch (err) {
      logger.error({ err, id: delivery.id }, 'delivery handler threw; it must settle the message instead')
    }
  }

  /**
   * Gives entries back to the group: they stay pending under this consumer's name, marked
   * idle since long ago, so the next XAUTOCLAIM of any consumer of the group takes them.
   * If Redis cannot be told, they are reclaimed once `claimIdleMs` has passed.
   */
  async #giveBack (entries: StreamEntry[], mode: 'release' | 'unread'): Promise<void> {
    const byStream = new Map<string, string[]>()
    for (const e of entries) byStream.set(e.stream, [...(byStream.get(e.stream) ?? []), e.id])
    for (const [stream, ids] of byStream) {
      try {
        await this.#hold(stream, ids, mode)
      } catch (err) {
        this.#p.logger.debug({ topic: this.#topicOf.get(stream), reason: this.#p.connections.reason(err) },
          'could not give entries back at once; they are reclaimed after claimIdleMs')
      }
    }
  }

  /** Refreshes the idle time of every entry this consumer holds, so no other consumer reclaims them while they are worked on. */
  async #refreshHeld (): Promise<void> {
    if (this.#heartbeatRunning) return
    this.#heartbeatRunning = true
    try {
      for (const stream of this.#streams) {
        const ids = [...[...this.#inFlight.get(stream)!.values()].filter(h => h.settling !== true).map(h => h.entry.id), ...this.#backlog.filter(h => h.entry.stream === stream).map(h => h.entry.id)]
        if (ids.length === 0) continue
        const states = await this.#hold(stream, ids, 'touch')
        // An entry acked while the refresh was on its way (after an outage, the refresh may even
        // run after the XACK: Redis forgot the script and it is sent again) is not held any more,
        // rightly: only an entry still handled here and not held is another consumer's doing.
        const inFlight = this.#inFlight.get(stream)!
        const stillHere = (id: string): boolean => {
          const held = inFlight.get(id)
          return (held !== undefined && held.settling !== true) || this.#backlog.some(h => h.entry.stream === stream && h.entry.id === id)
        }
        const lost = ids.filter((id, i) => states[i] === HOLD_STATE.notHeld && stillHere(id))
        if (lost.length > 0) {
          this.#p.logger.warn({ topic: this.#topicOf.get(stream), ids: lost, consumer: this.#p.consumer },
            'another consumer of the group took over entries this one still holds; they may be handled twice')
        }
      }
      this.#heartbeatFailing = false
    } catch (err) {
      // Once per failure streak, and not during an outage (already logged): a refused script (ACL) must be seen.
      const fields = { consumer: this.#p.consumer, reason: this.#p.connections.reason(err) }
      const message = 'could not refresh the entries this consumer holds; other consumers may take them over after claimIdleMs'
      if (this.#heartbeatFailing || this.#p.connections.outage) this.#p.logger.debug(fields, message)
      else this.#p.logger.warn(fields, message)
      this.#heartbeatFailing = true
    } finally {
      this.#heartbeatRunning = false
    }
  }

  /** Runs the hold script on ids of one stream; one state per id (see HOLD_SCRIPT). */
  async #hold (stream: string, ids: string[], mode: HoldMode): Promise<number[]> {
    const { client, options, consumer } = this.#p
    const states: number[] = []
    for (let i = 0; i < ids.length; i += HOLD_BATCH) {
      const args = [stream, options.group, consumer, mode, ...ids.slice(i, i + HOLD_BATCH)]
      let reply: unknown
      try {
        reply = await client.call('EVALSHA', HOLD_SCRIPT_SHA, 1, ...args)
      } catch (err) {
        if (!isNoScript(err)) throw err
        reply = await client.call('EVAL', HOLD_SCRIPT, 1, ...args)
      }
      if (Array.isArray(reply)) states.push(...reply.map(Number))
    }
    return states
  }

  /** Ends a blocking read at once (CLIENT UNBLOCK … TIMEOUT) rather than waiting out its BLOCK. */
  async #interruptRead (): Promise<void> {
    const reading = this.#reading
    if (reading === undefined || !this.#canUnblock) return
    const finished = reading.then(() => true, () => true)
    // The read may not be blocking yet when asked: try a few times, it ends within BLOCK_MS anyway.
    for (let attempt = 0; attempt < 5 && this.#reading === reading; attempt++) {
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
      await Promise.race([finished, new Promise(resolve => setTimeout(resolve, 50))])
    }
  }

  /** `XGROUP CREATE <stream> <group> 0 MKSTREAM` on every stream; a group that exists already is fine. */
  async #ensureGroups (): Promise<void> {
    for (const stream of this.#streams) {
      try {
        await this.#p.client.call('XGROUP', 'CREATE', stream, this.#p.options.group, '0', 'MKSTREAM')
      } catch (err) {
        if (!isBusyGroup(err)) throw err
      }
    }
  }

  /**
   * Removes this consumer's name from the group on each stream where it holds no pending
   * entry, so groups do not collect the names of stopped processes. Where it still holds
   * some (aborted, or Redis could not be told of a release), the name stays: deleting it
   * would drop those entries from the group for good.
   */
  async #leaveGroup (): Promise<void> {
    const { client, options, consumer, logger } = this.#p
    for (const stream of this.#streams) {
      try {
        const pending = await client.call('XPENDING', stream, options.group, '-', '+', 1, consumer)
        if (Array.isArray(pending) && pending.length > 0) continue
        await client.call('XGROUP', 'DELCONSUMER', stream, options.group, consumer)
      } catch (err) {
        if (isNoGroup(err)) continue
        logger.debug({ topic: this.#topicOf.get(stream), consumer, reason: this.#p.connections.reason(err) }, 'could not remove the consumer from its group')
      }
    }
  }
}
