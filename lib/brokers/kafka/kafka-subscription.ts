import kafkajs, { type Consumer, type ConsumerGroupJoinEvent, type EachMessagePayload, type IHeaders, type KafkaJSProtocolError } from 'kafkajs'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { HERALD_ASSIGNER, readAssignmentNote, type TopicPartitions } from './kafka-assigner.js'
import { kafkaError, kafkaReason } from './kafka-errors.js'
import { isConnectionTrouble, type KafkaOutage } from './kafka-outage.js'

/**
 * How long `eachMessage` waits for a delivery to settle before parking it (ms). kafkajs
 * fetches from a broker again only once every batch of the previous fetch is processed,
 * so a message that waits (a slow handler, a retry delay) inside `eachMessage` would hold
 * back every other partition led by that broker. A parked delivery's partition is paused
 * and `eachMessage` returns; the partition resumes once the delivery settles.
 */
const PARK_AFTER_MS = 1000

/**
 * How long an ack waits for its commit (ms). kafkajs retries a commit until Kafka answers,
 * which during an outage is without end; past this the ack resolves and the commit goes on
 * (it is made again, if need be, once Kafka answers), so that a stop is not held up.
 */
const COMMIT_WAIT_MS = 5_000

/** Most released offsets remembered to count redeliveries. */
const MAX_REMEMBERED_RELEASES = 10_000

interface InFlight {
  readonly topic: string
  readonly partition: number
  /** The partition's revocation count when the message was handed over. */
  readonly epoch: number
  /** Paused and returned from `eachMessage` while the delivery is unsettled. */
  parked: boolean
  settled: boolean
  /** Waiting for a retry: not counted against `maxInFlight`. */
  waiting: boolean
  /** Lets `eachMessage` return (settled or parked). */
  wake: () => void
}

/** The last message acked on a partition: what this member has handled there, committed or not yet. */
interface Acked {
  /** The offset after it: what to commit. */
  readonly next: bigint
  /** The partition's revocation count when it was acked: a record from before a revocation says nothing. */
  readonly epoch: number
}

export interface KafkaSubscriptionOptions {
  consumer: Consumer
  options: SubscribeOptions
  onDelivery: DeliveryHandler
  logger: Logger
  secrets: string[]
  /** Describes the brokers, for messages: `127.0.0.1:9092`. */
  brokers: string
  /** The broker's outage log, shared by its clients. */
  outage: KafkaOutage
  onClosed: () => void
}

/**
 * One kafkajs consumer in a group. Per partition, one message is handed over at a time
 * and the next only once it is settled, so a partition (a key) is handled in order; the
 * offset committed is always the one after the last message acked, so nothing after a
 * message that was released or never settled is ever committed.
 *
 * A delivery is first awaited inside kafkajs's `eachMessage`, which keeps a busy partition
 * streaming from one fetch; one that takes longer than `PARK_AFTER_MS`, or whose handler
 * asks to keep its place (`keepAlive`, a retry delay), is parked: its partition is paused,
 * so kafkajs keeps fetching and heartbeating for the others, and resumed when it settles.
 *
 * Rebalances and restarts. A parked delivery outlives a rebalance (kafkajs rejoins
 * without waiting for it), so the member reports the partitions it holds a message of
 * when it joins (`held()`), and Herald's assigner (kafka-assigner.ts) leaves those
 * partitions with it: no other member gets a message this one is still handling. A
 * partition it keeps beyond its fair share only for that is handed back once its message
 * is settled: the next message fetched from it is not handed over, and the member asks
 * for a new rebalance instead. After a rejoin or a restart kafkajs fetches from the
 * committed offset again; messages this member acked meanwhile are skipped rather than
 * handled twice, and their commit, if it failed (Kafka away, a rebalance under way), is
 * made again once the member has joined.
 */
export class KafkaSubscription implements Subscription {
  readonly #consumer: Consumer
  readonly #options: SubscribeOptions
  readonly #onDelivery: DeliveryHandler
  readonly #logger: Logger
  readonly #secrets: string[]
  readonly #brokers: string
  readonly #onClosed: () => void
  /** Unsettled deliveries by `topic/partition`: at most one per partition. */
  readonly #inFlight = new Map<string, InFlight>()
  /** Partitions paused because `maxInFlight` deliveries were unsettled when a message came. */
  readonly #held = new Map<string, { topic: string, partition: number }>()
  /** Times each partition left this member's assignment, so an ack after a rebalance does not commit for the new owner. */
  readonly #epochs = new Map<string, number>()
  #assignment = new Map<string, number[]>()
  /** Released offsets (`topic/partition@offset`) and how often, for `redeliveries`. */
  readonly #released = new Map<string, number>()
  #idle: Array<() => void> = []
  #stopping = false
  #abandoned = false
  #closing: Promise<void> | undefined
  #joins = 0
  /** Settles `start()`'s wait for the first join: resolved by a join, rejected by a fatal crash or `abandon()`. */
  #joinWait: { resolve: () => void, reject: (err: unknown) => void } | undefined
  readonly #outage: KafkaOutage
  /** This subscription's name in the outage log. */
  readonly #who: string
  /** Crashed and not joined again since (kafkajs restarts it). */
  #crashed = false
  /** The last message acked per partition (`topic/partition`). */
  readonly #acked = new Map<string, Acked>()
  /** Offsets this member saw committed, per partition (kafkajs's commit events). */
  readonly #confirmed = new Map<string, bigint>()
  /** A commit failed and no later one succeeded: log the next failure at debug, commit again when Kafka answers. */
  #commitFailing = false
  #lastCommitRetry = 0
  /** Partitions the leader asked this member to hand back once their message is settled. */
  readonly #handBack = new Set<string>()
  /** A rebalance was asked for since the last join (to hand partitions back). */
  #rejoinAsked = false
  #assignedCount = 0

  constructor (o: KafkaSubscriptionOptions) {
    this.#consumer = o.consumer
    this.#options = o.options
    this.#onDelivery = o.onDelivery
    this.#logger = o.logger
    this.#secrets = o.secrets
    this.#brokers = o.brokers
    this.#outage = o.outage
    this.#who = `group "${o.options.group}" (${Math.random().toString(36).slice(2, 8)})`
    this.#onClosed = o.onClosed
  }

  /**
   * What this member reports when it joins: the partitions it holds an unsettled message of
   * (`held`, which it must keep), and those it has and would rather keep (`owned`: its
   * partitions, less those it was asked to hand back).
   */
  claims (): { held: TopicPartitions, owned: TopicPartitions } {
    const held: TopicPartitions = {}
    for (const f of this.#inFlight.values()) (held[f.topic] ??= []).push(f.partition)
    const owned: TopicPartitions = {}
    for (const [topic, partitions] of this.#assignment) {
      const kept = partitions.filter(p => !this.#handBack.has(`${topic}/${p}`))
      if (kept.length > 0) owned[topic] = kept
    }
    return { held, owned }
  }

  /** Subscribes, starts consuming, and resolves once the member has joined the group and received its partitions. */
  async start (partitions: number, joinTimeoutMs: number): Promise<void> {
    const { group, topics, maxInFlight } = this.#options
    const consumer = this.#consumer
    let lastCrash: unknown
    let fatal: unknown
    consumer.on(consumer.events.GROUP_JOIN, event => this.#joined(event))
    consumer.on(consumer.events.FETCH, () => {
      this.#outage.reached()
      // Kafka answers again: commit what could not be committed meanwhile (at most every few seconds).
      if (this.#commitFailing && Date.now() - this.#lastCommitRetry > COMMIT_WAIT_MS) {
        this.#lastCommitRetry = Date.now()
        this.#commitPending()
      }
    })
    consumer.on(consumer.events.COMMIT_OFFSETS, event => {
      for (const { topic, partitions } of event.payload.topics) {
        for (const { partition, offset } of partitions) {
          const tp = `${topic}/${partition}`
          const committed = BigInt(String(offset))
          if ((this.#confirmed.get(tp) ?? -1n) < committed) this.#confirmed.set(tp, committed)
        }
      }
    })
    consumer.on(consumer.events.CRASH, event => {
      const { error, restart } = event.payload
      lastCrash = error
      if (restart) {
        const reason = kafkaReason(error, this.#secrets)
        const streak = this.#crashed
        this.#crashed = true
        if (isConnectionTrouble(reason) || this.#outage.active) {
          // Kafka is away (or coming back): one line for the whole outage, from the outage log.
          this.#outage.lost(this.#who, reason)
          this.#logger.debug({ group, err: reason }, 'Kafka consumer crashed; kafkajs restarts it')
        } else if (streak) {
          this.#logger.debug({ group, err: reason }, 'Kafka consumer crashed again; kafkajs restarts it')
        } else {
          this.#logger.warn({ group, err: reason }, 'Kafka consumer crashed; kafkajs restarts it')
        }
      } else {
        fatal = error
        this.#logger.error({ group, err: kafkaReason(error, this.#secrets) }, 'Kafka consumer stopped after an error it cannot recover from; restart the worker')
        this.#joinWait?.reject(error)
      }
    })
    try {
      await consumer.connect()
      await consumer.subscribe({ topics, fromBeginning: true })
      // Resolves after the first join attempt; a failed one is retried by kafkajs (CRASH, restart).
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: Math.max(1, Math.min(maxInFlight, partitions)),
        eachMessage: payload => this.#eachMessage(payload)
      })
    } catch (err) {
      await this.#disconnect()
      throw kafkaError(`could not start a Kafka consumer for group "${group}" at ${this.#brokers}`, err, this.#secrets)
    }
    if (this.#joins > 0) return
    let timer: NodeJS.Timeout | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        if (fatal !== undefined || this.#abandoned) {
          reject(fatal ?? new Error('the broker was closed'))
          return
        }
        this.#joinWait = { resolve, reject }
        const seconds = Math.round(joinTimeoutMs / 1000)
        timer = setTimeout(() => reject(new Error(`no partitions assigned within ${seconds} s${lastCrash === undefined ? '' : ` (last error: ${kafkaReason(lastCrash, this.#secrets)})`}`)), joinTimeoutMs)
      })
    } catch (err) {
      await this.#disconnect()
      throw kafkaError(`could not join Kafka consumer group "${group}" at ${this.#brokers}`, err, this.#secrets)
    } finally {
      clearTimeout(timer)
      this.#joinWait = undefined
    }
  }

  async pause (): Promise<void> {
    this.#stopping = true
    this.#pauseAll()
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.pause()
      if (this.#inFlight.size > 0) await new Promise<void>(resolve => this.#idle.push(resolve))
      await this.#disconnect()
      this.#released.clear()
      this.#onClosed()
    })()
    return this.#closing
  }

  /**
   * Leaves the group without waiting for unsettled deliveries (the broker is closing):
   * they are not committed, so the group gets them again.
   */
  async abandon (): Promise<void> {
    this.#stopping = true
    this.#abandoned = true
    this.#joinWait?.reject(new Error('the broker was closed'))
    this.#pauseAll()
    for (const f of this.#inFlight.values()) f.wake()
    this.#inFlight.clear()
    this.#wakeIdle()
    await this.close()
  }

  #joined (event: ConsumerGroupJoinEvent): void {
    const { memberId, memberAssignment, groupProtocol } = event.payload
    const assignment = new Map(Object.entries(memberAssignment).map(([topic, partitions]) => [topic, [...partitions]]))
    for (const [topic, partitions] of this.#assignment) {
      for (const partition of partitions) {
        if (!(assignment.get(topic) ?? []).includes(partition)) {
          const tp = `${topic}/${partition}`
          this.#epochs.set(tp, (this.#epochs.get(tp) ?? 0) + 1)
          this.#acked.delete(tp)
          this.#confirmed.delete(tp)
        }
      }
    }
    this.#assignment = assignment
    this.#joins++
    this.#crashed = false
    this.#outage.back(this.#who)
    this.#outage.reached()
    this.#handBack.clear()
    this.#rejoinAsked = false
    this.#assignedCount = [...assignment.values()].reduce((n, ps) => n + ps.length, 0)
    const holding = [...this.#inFlight.values()].filter(f => (assignment.get(f.topic) ?? []).includes(f.partition)).length
    this.#logger.info({ group: this.#options.group, memberId, assignment: memberAssignment, holding }, 'joined Kafka consumer group')
    this.#commitPending()
    if (groupProtocol === HERALD_ASSIGNER && holding > 0 && !this.#stopping) void this.#readHandBack(memberId, this.#joins)
    // Pausing survives a rebalance in kafkajs but not a consumer restart: state it again.
    if (this.#stopping) {
      this.#pauseAll()
    } else {
      for (const [tp, f] of this.#inFlight) if (f.parked) this.#pausePartition(tp, f.topic, f.partition)
      for (const [tp, h] of this.#held) this.#pausePartition(tp, h.topic, h.partition)
    }
    this.#joinWait?.resolve()
  }

  async #eachMessage (payload: EachMessagePayload): Promise<void> {
    const { topic, partition, message } = payload
    const tp = `${topic}/${partition}`
    if (this.#stopping) {
      // Fetched before the pause: not handed over, and fetched from here if this member ever resumed.
      this.#pauseAll()
      this.#seek(topic, partition, message.offset)
      return
    }
    const acked = this.#acked.get(tp)
    if (acked !== undefined && acked.epoch === (this.#epochs.get(tp) ?? 0) && BigInt(message.offset) < acked.next) {
      // Fetched again after a rejoin or a restart (its commit had not reached Kafka): handled already.
      return
    }
    if (this.#handBack.has(tp) && !this.#inFlight.has(tp)) {
      // Kept only to finish a message, which is settled: not ours to start another. Ask for a
      // rebalance (kafkajs rejoins on this error), so the partition goes where it belongs.
      this.#seek(topic, partition, message.offset)
      if (this.#rejoinAsked) return
      this.#rejoinAsked = true
      this.#logger.info({ group: this.#options.group, partition: tp }, 'handing back a Kafka partition kept only to finish a message; asking for a rebalance')
      throw rebalanceRequest(tp)
    }
    if (this.#busy() >= this.#options.maxInFlight) {
      this.#held.set(tp, { topic, partition })
      this.#pausePartition(tp, topic, partition)
      this.#seek(topic, partition, message.offset)
      return
    }

    if (this.#inFlight.has(tp)) {
      // Never two at once from one partition (a restarted consumer refetching): wait for the first to settle.
      this.#held.set(tp, { topic, partition })
      this.#pausePartition(tp, topic, partition)
      this.#seek(topic, partition, message.offset)
      return
    }
    const id = `${tp}@${message.offset}`
    let wake: () => void = () => {}
    const woken = new Promise<void>(resolve => { wake = resolve })
    const f: InFlight = { topic, partition, epoch: this.#epochs.get(tp) ?? 0, parked: false, settled: false, waiting: false, wake }
    this.#inFlight.set(tp, f)
    const park = (): void => {
      if (f.parked || f.settled) return
      f.parked = true
      this.#pausePartition(tp, topic, partition)
      wake()
    }

    const delivery: Delivery = {
      topic,
      value: message.value ?? Buffer.alloc(0),
      key: message.key === null || message.key === undefined ? undefined : message.key.toString('utf8'),
      headers: decodeHeaders(message.headers),
      redeliveries: this.#released.get(id) ?? 0,
      id,
      ack: async () => {
        if (f.settled) return
        f.settled = true
        let failure: BrokerError | undefined
        if (this.#abandoned) {
          failure = new BrokerError(`could not commit ${id} for group "${this.#options.group}": the Kafka subscription was closed, the group will get the message again`, { retriable: true })
        } else if ((this.#epochs.get(tp) ?? 0) !== f.epoch) {
          this.#logger.debug({ group: this.#options.group, id }, 'not committing: the partition moved to another member, which will deliver the message again')
        } else {
          const next = BigInt(message.offset) + 1n
          if ((this.#acked.get(tp)?.next ?? -1n) < next) this.#acked.set(tp, { next, epoch: f.epoch })
          try {
            await withTimeout(this.#consumer.commitOffsets([{ topic, partition, offset: next.toString() }]), COMMIT_WAIT_MS, 'no answer from Kafka to the commit')
            this.#commitFailing = false
          } catch (err) {
            // Handled all the same: the commit is made again once Kafka answers (or the member
            // has joined again), and until then a fetch of it again is skipped; if the partition
            // moves first, its new owner delivers it again. Nothing for the caller to do: no error.
            const reason = kafkaReason(err, this.#secrets)
            const quiet = this.#commitFailing || this.#outage.active || this.#crashed || isConnectionTrouble(reason) || isRebalanceAnswer(err)
            this.#commitFailing = true
            const line = `could not commit ${id} yet; committing it again once Kafka answers`
            if (quiet) this.#logger.debug({ group: this.#options.group, err: reason }, line)
            else this.#logger.warn({ group: this.#options.group, err: reason }, line)
          }
        }
        this.#released.delete(id)
        this.#settled(tp, f)
        wake()
        if (failure !== undefined) throw failure
      },
      release: async () => {
        if (f.settled) return
        f.settled = true
        if (this.#released.size >= MAX_REMEMBERED_RELEASES) this.#released.clear()
        this.#released.set(id, (this.#released.get(id) ?? 0) + 1)
        // Fetch it again from here, whatever kafkajs resolved; nothing past it was committed.
        this.#seek(topic, partition, message.offset)
        this.#settled(tp, f)
        wake()
      },
      keepAlive: async () => {
        park()
        try {
          await payload.heartbeat()
        } catch (err) {
          // A rebalance or a restart answers the heartbeat with an error; kafkajs's loop rejoins.
          this.#logger.debug({ group: this.#options.group, err: kafkaReason(err, this.#secrets) }, 'Kafka heartbeat failed')
        }
      },
      waiting: (on) => {
        if (f.settled || f.waiting === on) return
        f.waiting = on
        // Its partition stays parked (order); the room it leaves lets other partitions fetch.
        if (on) {
          park()
          this.#roomFreed()
        }
      }
    }

    Promise.resolve()
      .then(() => this.#onDelivery(delivery))
      .catch((err: unknown) => this.#logger.error({ group: this.#options.group, id, err }, 'the delivery handler failed; the message stays unsettled'))

    const timer = setTimeout(park, PARK_AFTER_MS)
    await woken
    clearTimeout(timer)
  }

  /** Commits what this member acked on its partitions and Kafka did not confirm (a commit lost to an outage or a rebalance). */
  #commitPending (): void {
    const offsets: Array<{ topic: string, partition: number, offset: string }> = []
    for (const [topic, partitions] of this.#assignment) {
      for (const partition of partitions) {
        const tp = `${topic}/${partition}`
        const acked = this.#acked.get(tp)
        if (acked === undefined || acked.epoch !== (this.#epochs.get(tp) ?? 0)) continue
        if ((this.#confirmed.get(tp) ?? -1n) >= acked.next) continue
        offsets.push({ topic, partition, offset: acked.next.toString() })
      }
    }
    if (offsets.length === 0) this.#commitFailing = false
    if (offsets.length === 0 || this.#abandoned) return
    this.#consumer.commitOffsets(offsets).then(() => {
      this.#commitFailing = false
      this.#logger.debug({ group: this.#options.group, offsets }, 'committed what was acked while the commit could not be made')
    }, (err: unknown) => {
      this.#logger.debug({ group: this.#options.group, err: kafkaReason(err, this.#secrets) }, 'could not commit yet what was acked earlier; trying again')
    })
  }

  /** Reads the leader's note for this member (the partitions to hand back), from the group's description. */
  async #readHandBack (memberId: string, join: number): Promise<void> {
    try {
      const group = await this.#consumer.describeGroup()
      if (join !== this.#joins) return
      const me = group.members.find(m => m.memberId === memberId)
      const note = me === undefined ? undefined : readAssignmentNote(me.memberAssignment)
      if (note === undefined) return
      const partitions: string[] = []
      for (const [topic, list] of Object.entries(note.handBack)) {
        for (const partition of Array.isArray(list) ? list : []) {
          if ((this.#assignment.get(topic) ?? []).includes(partition)) partitions.push(`${topic}/${partition}`)
        }
      }
      if (partitions.length === 0) return
      for (const tp of partitions) this.#handBack.add(tp)
      this.#logger.info({ group: this.#options.group, partitions, assigned: this.#assignedCount }, 'keeping Kafka partitions beyond this member\'s share only to finish their messages; each is handed back once its message is settled')
    } catch (err) {
      // Without the note the partitions stay here until the next rebalance: nothing is lost, the load is only uneven.
      this.#logger.debug({ group: this.#options.group, err: kafkaReason(err, this.#secrets) }, 'could not read the Kafka group description')
    }
  }

  #settled (tp: string, f: InFlight): void {
    if (this.#inFlight.get(tp) === f) this.#inFlight.delete(tp)
    if (!this.#stopping) {
      if (f.parked) this.#resumePartition(f.topic, f.partition)
      this.#roomFreed()
    }
    if (this.#inFlight.size === 0) this.#wakeIdle()
  }

  /** Unsettled deliveries that count against `maxInFlight`: those not waiting for a retry. */
  #busy (): number {
    let n = 0
    for (const f of this.#inFlight.values()) if (!f.waiting) n++
    return n
  }

  /** A slot may be free: partitions held back for lack of one fetch again (and are held again if others take it first). */
  #roomFreed (): void {
    if (this.#stopping || this.#busy() >= this.#options.maxInFlight) return
    for (const h of this.#held.values()) this.#resumePartition(h.topic, h.partition)
    this.#held.clear()
  }

  #wakeIdle (): void {
    for (const resolve of this.#idle.splice(0)) resolve()
  }

  #pauseAll (): void {
    try {
      this.#consumer.pause(this.#options.topics.map(topic => ({ topic })))
    } catch {
      // Not running (not started yet, or restarting after a crash): nothing is fetched, and a join pauses again.
    }
  }

  #pausePartition (tp: string, topic: string, partition: number): void {
    // kafkajs forgets a whole-topic pause when one partition of the topic is paused.
    if (this.#stopping) {
      this.#pauseAll()
      return
    }
    try {
      this.#consumer.pause([{ topic, partitions: [partition] }])
    } catch (err) {
      this.#logger.debug({ group: this.#options.group, partition: tp, err: kafkaReason(err, this.#secrets) }, 'could not pause a Kafka partition')
    }
  }

  #resumePartition (topic: string, partition: number): void {
    try {
      this.#consumer.resume([{ topic, partitions: [partition] }])
    } catch (err) {
      this.#logger.debug({ group: this.#options.group, partition: `${topic}/${partition}`, err: kafkaReason(err, this.#secrets) }, 'could not resume a Kafka partition')
    }
  }

  #seek (topic: string, partition: number, offset: string): void {
    try {
      this.#consumer.seek({ topic, partition, offset })
    } catch (err) {
      // Not running: the next start fetches from the committed offset, which is not past this one.
      this.#logger.debug({ group: this.#options.group, partition: `${topic}/${partition}`, err: kafkaReason(err, this.#secrets) }, 'could not seek a Kafka partition')
    }
  }

  async #disconnect (): Promise<void> {
    this.#outage.forget(this.#who)
    try {
      await this.#consumer.disconnect()
    } catch (err) {
      this.#logger.warn({ group: this.#options.group, err: kafkaReason(err, this.#secrets) }, 'could not leave the Kafka consumer group cleanly; it rebalances once the session times out')
    }
  }
}

/** `promise`, or a rejection with `reason` after `ms` (the promise goes on; its outcome is ignored). */
async function withTimeout<T> (promise: Promise<T>, ms: number, reason: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  promise.catch(() => {})
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(reason)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** An error kafkajs's consumer loop takes for a rebalance under way: it rejoins the group. */
function rebalanceRequest (tp: string): KafkaJSProtocolError {
  // kafkajs's errors are not among the names Node finds in its CommonJS exports.
  return new kafkajs.KafkaJSProtocolError({
    name: 'KafkaJSProtocolError',
    message: `Herald hands partition ${tp} back to the group`,
    type: 'REBALANCE_IN_PROGRESS',
    code: 27,
    retriable: false
  } as unknown as Error)
}

/** A commit refused because the group is rebalancing or this member's generation is over. */
function isRebalanceAnswer (err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const type = (e as { type?: unknown }).type
    if (type === 'REBALANCE_IN_PROGRESS' || type === 'ILLEGAL_GENERATION' || type === 'UNKNOWN_MEMBER_ID' || type === 'NOT_COORDINATOR_FOR_GROUP') return true
    if (e.cause === e) break
  }
  return /not initialized|rebalanc/i.test(err instanceof Error ? err.message : String(err))
}

/** Header values as strings; a header repeated in one record keeps its last value. */
function decodeHeaders (headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers === undefined) return out
  for (const [name, raw] of Object.entries(headers)) {
    const value = Array.isArray(raw) ? raw[raw.length - 1] : raw
    if (value === undefined) continue
    Object.defineProperty(out, name, { value: typeof value === 'string' ? value : value.toString('utf8'), enumerable: true, writable: true, configurable: true })
  }
  return out
}
