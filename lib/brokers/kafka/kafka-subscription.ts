import type { Consumer, ConsumerGroupJoinEvent, EachMessagePayload, IHeaders } from 'kafkajs'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { kafkaError, kafkaReason } from './kafka-errors.js'

/**
 * How long `eachMessage` waits for a delivery to settle before parking it (ms). kafkajs
 * fetches from a broker again only once every batch of the previous fetch is processed,
 * so a message that waits (a slow handler, a retry delay) inside `eachMessage` would hold
 * back every other partition led by that broker. A parked delivery's partition is paused
 * and `eachMessage` returns; the partition resumes once the delivery settles.
 */
const PARK_AFTER_MS = 1000

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
  /** Lets `eachMessage` return (settled or parked). */
  wake: () => void
}

export interface KafkaSubscriptionOptions {
  consumer: Consumer
  options: SubscribeOptions
  onDelivery: DeliveryHandler
  logger: Logger
  secrets: string[]
  /** Describes the brokers, for messages: `127.0.0.1:9092`. */
  brokers: string
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

  constructor (o: KafkaSubscriptionOptions) {
    this.#consumer = o.consumer
    this.#options = o.options
    this.#onDelivery = o.onDelivery
    this.#logger = o.logger
    this.#secrets = o.secrets
    this.#brokers = o.brokers
    this.#onClosed = o.onClosed
  }

  /** Subscribes, starts consuming, and resolves once the member has joined the group and received its partitions. */
  async start (partitions: number, joinTimeoutMs: number): Promise<void> {
    const { group, topics, maxInFlight } = this.#options
    const consumer = this.#consumer
    let lastCrash: unknown
    let fatal: unknown
    consumer.on(consumer.events.GROUP_JOIN, event => this.#joined(event))
    consumer.on(consumer.events.CRASH, event => {
      const { error, restart } = event.payload
      lastCrash = error
      if (restart) {
        this.#logger.warn({ group, err: kafkaReason(error, this.#secrets) }, 'Kafka consumer crashed; kafkajs restarts it')
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
    const { memberId, memberAssignment } = event.payload
    const assignment = new Map(Object.entries(memberAssignment).map(([topic, partitions]) => [topic, [...partitions]]))
    for (const [topic, partitions] of this.#assignment) {
      for (const partition of partitions) {
        if (!(assignment.get(topic) ?? []).includes(partition)) {
          const tp = `${topic}/${partition}`
          this.#epochs.set(tp, (this.#epochs.get(tp) ?? 0) + 1)
        }
      }
    }
    this.#assignment = assignment
    this.#joins++
    this.#logger.info({ group: this.#options.group, memberId, assignment: memberAssignment }, 'joined Kafka consumer group')
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
    if (this.#inFlight.size >= this.#options.maxInFlight) {
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
    const f: InFlight = { topic, partition, epoch: this.#epochs.get(tp) ?? 0, parked: false, settled: false, wake }
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
          try {
            await this.#consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }])
          } catch (err) {
            failure = kafkaError(`could not commit ${id} for group "${this.#options.group}" at ${this.#brokers}`, err, this.#secrets)
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
      }
    }

    Promise.resolve()
      .then(() => this.#onDelivery(delivery))
      .catch((err: unknown) => this.#logger.error({ group: this.#options.group, id, err }, 'the delivery handler failed; the message stays unsettled'))

    const timer = setTimeout(park, PARK_AFTER_MS)
    await woken
    clearTimeout(timer)
  }

  #settled (tp: string, f: InFlight): void {
    if (this.#inFlight.get(tp) === f) this.#inFlight.delete(tp)
    if (!this.#stopping) {
      if (f.parked) this.#resumePartition(f.topic, f.partition)
      // A slot is free: partitions held back for lack of one fetch again (and are held again if others take it first).
      if (this.#inFlight.size < this.#options.maxInFlight) {
        for (const h of this.#held.values()) this.#resumePartition(h.topic, h.partition)
        this.#held.clear()
      }
    }
    if (this.#inFlight.size === 0) this.#wakeIdle()
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
    try {
      await this.#consumer.disconnect()
    } catch (err) {
      this.#logger.warn({ group: this.#options.group, err: kafkaReason(err, this.#secrets) }, 'could not leave the Kafka consumer group cleanly; it rebalances once the session times out')
    }
  }
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
