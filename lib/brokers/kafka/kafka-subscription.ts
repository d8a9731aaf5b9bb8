import type { Admin, Consumer, ConsumerGroupJoinEvent, EachBatchPayload, KafkaMessage } from 'kafkajs'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { withTimeout } from '../../time.js'
import type { DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { brokerClosedError } from '../shared/closed-error.js'
import { InFlight } from '../shared/in-flight.js'
import type { OutageLog } from '../shared/outage-log.js'
import { HERALD_ASSIGNER, type TopicPartitions } from './kafka-assigner.js'
import { ACK_COMMIT_DELAY_MS, COMMIT_WAIT_MS, CommitRounds } from './kafka-commit-rounds.js'
import { isConnectionTrouble, kafkaError, kafkaReason } from './kafka-errors.js'
import { kafkaDelivery } from './kafka-delivery.js'
import type { Entry } from './kafka-partition-flow.js'
import { collectCommits, DueGate, Part, PartitionControl, readMarks } from './kafka-part.js'
import { isRebalanceAnswer, readHandBack, rebalanceRequest } from './kafka-rebalance.js'
import { watchConsumer } from './kafka-consumer-events.js'

/** Fetched and not handed over, per partition, before its fetching pauses (and resumes at half). */
const MAX_BUFFERED = 1_000

export interface KafkaSubscriptionOptions {
  consumer: Consumer
  admin: Admin
  options: SubscribeOptions
  onDelivery: DeliveryHandler
  logger: Logger
  secrets: string[]
  /** Describes the brokers, for messages (`127.0.0.1:9092`). */
  brokers: string
  outage: OutageLog
  onClosed: () => void
}

/**
 * One kafkajs consumer in a group. `eachBatch` only files fetched messages into their
 * partition's lanes (kafka-partition-flow.ts) and returns, so fetching and heartbeats never
 * wait for a handler; messages go from the lanes up to `maxInFlight`. Acks are committed in
 * coalesced rounds (kafka-commit-rounds.ts) at the lowest unsettled offset, with the
 * ledger's metadata (kafka-commit-ledger.ts): delivery count of that message, acked offsets
 * above it, lease (what may be in hand until the next commit). A partition's lowest
 * unsettled message goes only once a commit counted that delivery, any message only once
 * a commit's lease covers it; after a restart, the unsettled messages below the lease (in
 * hand, maybe, when a worker died) go one at a time, nothing beside them, so another
 * death is theirs alone and is counted. Rebalances: kafka-assigner.ts
 * leaves partitions with a message in hand here (`claims()`); one kept beyond this member's
 * share only for that is handed back (a new rebalance) once nothing of it is in hand.
 */
export class KafkaSubscription implements Subscription {
  readonly #o: KafkaSubscriptionOptions
  readonly #group: string
  readonly #parts = new Map<string, Part>()
  readonly #suspects = new Set<Part>()
  readonly #inFlight = new InFlight()
  #waiting = 0
  #assignment = new Map<string, number[]>()
  #stopping = false
  #abandoned = false
  #closing: Promise<void> | undefined
  #joins = 0
  #rejoinAsked = false
  #commitFailing = false
  #lastCommitRetry = 0
  #heartbeat: (() => Promise<void>) | undefined
  readonly #commits: CommitRounds
  readonly #control: PartitionControl
  readonly #due = new DueGate(() => this.#o.options, () => this.#pump())
  readonly #who: string
  /** Settles `start()`'s wait for the first join. */
  joinWait: { resolve: () => void, reject: (err: unknown) => void } | undefined
  crashed = false

  constructor (o: KafkaSubscriptionOptions) {
    this.#o = o
    this.#group = o.options.group
    this.#who = `group "${o.options.group}" (${Math.random().toString(36).slice(2, 8)})`
    this.#control = new PartitionControl(o.consumer, o.options.topics, o.logger, o.secrets, o.options.group, () => this.#stopping)
    this.#commits = new CommitRounds(() => collectCommits(this.#parts.values(), this.#abandoned, this.#stopping, () => { this.#commitFailing = false }), async offsets => await this.#o.consumer.commitOffsets(offsets), err => this.#commitFailed(err), () => this.#pump())
  }

  get who (): string { return this.#who }

  /** What this member reports when it joins: partitions it holds a message of, and those it would rather keep. */
  claims (): { held: TopicPartitions, owned: TopicPartitions } {
    const held: TopicPartitions = {}
    const owned: TopicPartitions = {}
    for (const p of this.#parts.values()) {
      if (p.inHand.size > 0) (held[p.topic] ??= []).push(p.partition)
      if (!p.handBack) (owned[p.topic] ??= []).push(p.partition)
    }
    return { held, owned }
  }

  /** Subscribes, starts consuming, and resolves once the member has joined the group and received its partitions. */
  async start (joinTimeoutMs: number): Promise<void> {
    const { consumer } = this.#o
    const { topics } = this.#o.options
    const run = async (): Promise<void> => await consumer.run({ autoCommit: false, eachBatch: async payload => await this.#eachBatch(payload) })
    const events = watchConsumer(this, consumer, this.#o, {
      restart: async () => { await consumer.connect(); await run() },
      running: () => this.#joins > 0 && !this.#stopping,
      joined: event => this.#joined(event),
      fetched: () => {
        if (this.#commitFailing && Date.now() - this.#lastCommitRetry > COMMIT_WAIT_MS) {
          this.#lastCommitRetry = Date.now()
          void this.#commits.soon()
        }
      }
    })
    try {
      await consumer.connect()
      await consumer.subscribe({ topics, fromBeginning: true })
      await run()
    } catch (err) {
      await this.#disconnect()
      throw kafkaError(`could not start a Kafka consumer for group "${this.#group}" at ${this.#o.brokers}`, err, this.#o.secrets)
    }
    if (this.#joins > 0) return
    try {
      await withTimeout(new Promise<void>((resolve, reject) => {
        if (events.fatal !== undefined || this.#abandoned) {
          reject(events.fatal ?? brokerClosedError('Kafka'))
          return
        }
        this.joinWait = { resolve, reject }
      }), joinTimeoutMs, () => new BrokerError(`no partitions assigned within ${Math.round(joinTimeoutMs / 1000)} s${events.lastCrash === undefined ? '' : ` (last error: ${kafkaReason(events.lastCrash, this.#o.secrets)})`}`))
    } catch (err) {
      await this.#disconnect()
      throw kafkaError(`could not join Kafka consumer group "${this.#group}" at ${this.#o.brokers}`, err, this.#o.secrets)
    } finally {
      this.joinWait = undefined
    }
  }

  async pause (): Promise<void> {
    this.#stopping = true
    this.#control.pauseAll()
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.pause()
      await this.#inFlight.idle()
      // The last word on each partition: what was acked, and delivery counts as they were (a release counts nothing).
      if (!this.#abandoned) await this.#commits.soon()
      await this.#disconnect()
      this.#o.onClosed()
    })()
    return this.#closing
  }

  /** Leaves the group without waiting for unsettled deliveries (the broker is closing): the group gets them again. */
  async abandon (): Promise<void> {
    this.#stopping = true
    this.#abandoned = true
    this.joinWait?.reject(brokerClosedError('Kafka'))
    this.#control.pauseAll()
    this.#inFlight.abandon()
    await this.close()
  }

  #joined (event: ConsumerGroupJoinEvent): void {
    const { memberId, memberAssignment, groupProtocol } = event.payload
    const assignment = new Map(Object.entries(memberAssignment).map(([topic, partitions]) => [topic, [...partitions]]))
    for (const p of this.#parts.values()) {
      if ((assignment.get(p.topic) ?? []).includes(p.partition)) continue
      // Moved to another member: its buffered messages are fetched by the new owner, and an ack of one in hand commits nothing.
      p.revoked = true
      this.#parts.delete(p.tp)
      this.#suspects.delete(p)
    }
    const fresh: Part[] = []
    for (const [topic, partitions] of assignment) {
      for (const partition of partitions) {
        const tp = `${topic}/${partition}`
        const p = this.#parts.get(tp)
        if (p !== undefined) {
          p.handBack = false
          continue
        }
        const part = new Part(topic, partition)
        this.#parts.set(tp, part)
        fresh.push(part)
      }
    }
    if (fresh.length > 0) {
      const loading = this.#readMarks(fresh)
      for (const p of fresh) p.loaded = loading
    }
    this.#assignment = assignment
    this.#joins++
    this.crashed = false
    this.#rejoinAsked = false
    this.#o.outage.back(this.#who)
    this.#o.outage.reached()
    const holding = [...this.#parts.values()].filter(p => p.inHand.size > 0).length
    this.#o.logger.info({ group: this.#group, memberId, assignment: memberAssignment, holding }, 'joined Kafka consumer group')
    void this.#commits.soon()
    if (groupProtocol === HERALD_ASSIGNER && holding > 0 && !this.#stopping) void this.#readHandBack(memberId, this.#joins)
    // Pausing survives a rebalance in kafkajs but not a consumer restart: state it again.
    if (this.#stopping) this.#control.pauseAll()
    else for (const p of this.#parts.values()) if (p.paused) this.#control.pause(p)
    this.joinWait?.resolve()
  }

  async #readMarks (parts: Part[]): Promise<void> {
    // Without them nothing is lost: a message in hand when a worker died is not counted once more, that is all.
    const suspects = await readMarks(this.#o.admin, this.#group, parts, err => this.#o.logger.warn({ group: this.#group, err: kafkaReason(err, this.#o.secrets) }, 'could not read the group\'s committed offsets; delivery counts from before this start are not known'))
    for (const p of suspects) if (!p.revoked) this.#suspects.add(p)
    this.#pump()
  }

  async #eachBatch ({ batch, heartbeat }: EachBatchPayload): Promise<void> {
    this.#heartbeat = heartbeat
    if (this.#stopping) {
      this.#control.pauseAll()
      return
    }
    const part = this.#parts.get(`${batch.topic}/${batch.partition}`)
    if (part === undefined) return
    await part.loaded
    if (part.revoked || this.#stopping) return
    if (part.handBack) {
      // Kept only to finish a message: once nothing of it is in hand, ask for a rebalance (kafkajs rejoins on this error).
      if (part.inHand.size > 0 || this.#rejoinAsked) return
      this.#rejoinAsked = true
      this.#o.logger.info({ group: this.#group, partition: part.tp }, 'handing back a Kafka partition kept only to finish a message; asking for a rebalance')
      throw rebalanceRequest(part.tp)
    }
    for (const message of batch.messages) {
      const offset = Number(message.offset)
      if (part.ledger.fetched(offset)) part.flow.add({ offset, key: message.key === null || message.key === undefined ? undefined : message.key.toString('utf8'), item: message })
    }
    if (part.flow.buffered >= MAX_BUFFERED && !part.paused) {
      part.paused = true
      this.#control.pause(part)
    }
    this.#pump()
  }

  /** Hands over what may go now: up to `maxInFlight`, each partition's lowest message once its delivery is counted. */
  #pump (): void {
    if (this.#stopping) return
    const room = (): boolean => this.#inFlight.count - this.#waiting < this.#o.options.maxInFlight
    for (const p of this.#suspects) if (p.isLoaded && p.inHand.size === 0 && (p.ledger.headOrNext() >= p.suspectUntil || this.#due.notYet(p.topic, p.flow.peek()?.item))) this.#cleared(p)
    if (this.#suspects.size > 0) {
      // After a death: one message that may have been in hand then at a time, nothing beside it, the next once the last ack is committed.
      if ([...this.#suspects].some(p => p.inHand.size > 0) || [...this.#parts.values()].some(p => p.mustLand >= 0) || !room()) return
      // The one whose delivery is being counted or was counted, if one is: only one is ever counted at a time.
      const counting = [...this.#suspects].find(p => p.wantMark || (p.markedHead >= 0 && p.markedHead === p.ledger.head()))
      for (const p of counting === undefined ? this.#suspects : [counting]) {
        const entry = p.flow.peek()
        if (!p.isLoaded || entry === undefined) continue
        this.#handOverIfCounted(p, entry)
        return
      }
      return
    }
    for (const p of this.#parts.values()) {
      if (!p.isLoaded || p.handBack) continue
      for (let entry = p.flow.peek(); entry !== undefined && room(); entry = p.flow.peek()) {
        if (!this.#handOverIfCounted(p, entry)) break
      }
      if (p.paused && p.flow.buffered < MAX_BUFFERED / 2) {
        p.paused = false
        this.#control.resume(p)
      }
    }
  }

  /** Hands `entry` over, unless it is a retry not due yet (kafka-part.ts: DueGate) or a commit must land first (see Part.mayHandOver: it asks for it). */
  #handOverIfCounted (p: Part, entry: Entry<KafkaMessage>): boolean {
    if (this.#due.notYet(p.topic, entry.item) || !p.mayHandOver(entry.offset, Math.max(64, 2 * this.#o.options.maxInFlight), () => { void this.#commits.soon() })) return false
    p.flow.take()
    this.#handOver(p, entry)
    return true
  }

  #handOver (p: Part, entry: Entry<KafkaMessage>): void {
    const settle = this.#inFlight.add()
    const delivery = kafkaDelivery(p, entry, {
      group: this.#group,
      logger: this.#o.logger,
      secrets: this.#o.secrets,
      settled: () => settle(),
      waiting: on => { this.#waiting += on ? 1 : -1; if (on) this.#pump() }, // its key waits in its lane; the room it leaves lets other keys and partitions go
      handedOn: () => this.#afterSettle(p),
      abandoned: () => this.#abandoned,
      acked: async () => {
        if (p.suspect && p.inHand.size === 0 && p.ledger.headOrNext() >= p.suspectUntil) this.#cleared(p)
        this.#afterSettle(p)
        await (this.#stopping || this.#suspects.size > 0 || p.handBack ? this.#commits.soon() : this.#commits.later(ACK_COMMIT_DELAY_MS)) // at once when a stop, a recovery or a hand-back waits for it
      },
      released: async () => {
        if (p.revoked || this.#abandoned) return
        this.#afterSettle(p)
        // Its delivery count goes back to what it was (a release uses up no attempt) before the caller moves on.
        if (this.#stopping) await this.#commits.soon()
      },
      heartbeat: async () => await this.#heartbeat?.()
    })
    Promise.resolve()
      .then(() => this.#o.onDelivery(delivery))
      .catch((err: unknown) => this.#o.logger.error({ group: this.#group, id: delivery.id, err }, 'the delivery handler failed; the message stays unsettled'))
  }

  /** Past every message that may have been in hand when a worker died: it flows again. */
  #cleared (p: Part): void {
    p.suspect = false
    this.#suspects.delete(p)
  }

  #afterSettle (p: Part): void {
    if (p.handBack && p.inHand.size === 0 && !this.#stopping) {
      // Fetch it again (from what is not settled) so that a batch comes and asks for the rebalance.
      this.#control.seek(p, p.ledger.headOrNext())
      this.#control.resume(p)
    }
    setImmediate(() => this.#pump())
  }

  #commitFailed (err: unknown): void {
    const reason = kafkaReason(err, this.#o.secrets)
    const quiet = this.#commitFailing || this.#o.outage.active || this.crashed || isConnectionTrouble(reason) || isRebalanceAnswer(err)
    this.#commitFailing = true
    this.#o.logger[quiet ? 'debug' : 'warn']({ group: this.#group, err: reason }, 'could not commit offsets yet; committing them again once Kafka answers')
  }

  async #readHandBack (memberId: string, join: number): Promise<void> {
    try {
      const partitions = await readHandBack(this.#o.consumer, memberId, this.#assignment)
      if (join !== this.#joins || partitions.length === 0) return
      const parts = partitions.flatMap(tp => this.#parts.get(tp) ?? [])
      for (const p of parts) p.handBack = true
      this.#o.logger.info({ group: this.#group, partitions, assigned: this.#parts.size }, 'keeping Kafka partitions beyond this member\'s share only to finish their messages; each is handed back once its message is settled')
      for (const p of parts) this.#afterSettle(p)
    } catch (err) {
      // Without the note the partitions stay here until the next rebalance: nothing is lost, the load is only uneven.
      this.#o.logger.debug({ group: this.#group, err: kafkaReason(err, this.#o.secrets) }, 'could not read the Kafka group description')
    }
  }

  async #disconnect (): Promise<void> {
    this.#o.outage.forget(this.#who)
    try {
      await this.#o.consumer.disconnect()
    } catch (err) {
      this.#o.logger.warn({ group: this.#group, err: kafkaReason(err, this.#o.secrets) }, 'could not leave the Kafka consumer group cleanly; it rebalances once the session times out')
    }
  }
}
