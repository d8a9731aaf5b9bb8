import { Kafka, PartitionAssigners, Partitioners, type Admin, type Consumer, type Producer } from 'kafkajs'
import { BrokerError, isRetriable, ErrorCode } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { redactText, rememberSecrets } from '../../redact.js'
import { withTimeout } from '../../time.js'
import type { Broker, BrokerDeps, BrokerHealth, DeadLetterCursor, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription, TopicLag } from '../broker.js'
import { checkOutgoing } from '../outgoing-checks.js'
import { brokerClosedError } from '../shared/closed-error.js'
import { OutageLog } from '../shared/outage-log.js'
import { groupRetryTopic, withGroupRetryTopics } from '../shared/group-destination.js'
import { heldStickyAssigner } from './kafka-assigner.js'
import { KAFKA_CONSUMER_DEFAULTS, kafkaConsumerRetry, type KafkaSettings } from './kafka-config.js'
import { kafkaError, kafkaErrorTypes, kafkaReason, kafkaRetriable, kafkaSecrets } from './kafka-errors.js'
import { kafkaLag } from './kafka-lag.js'
import { kafkaDeadLetters } from './kafka-dead-letters.js'
import { kafkaLogCreator } from './kafka-log.js'
import { KafkaSubscription } from './kafka-subscription.js'
import { KafkaTopics } from './kafka-topics.js'

/** How long `subscribe` waits for the group to give the new member its partitions (ms). */
const JOIN_TIMEOUT_MS = 60_000

/** How long `health` waits for the cluster to answer (ms). */
const HEALTH_TIMEOUT_MS = 5_000

/**
 * Produce answers meaning Kafka no longer follows this idempotent producer's sequence
 * numbers, typically after a broker restart lost sends that had failed on the client: the
 * producer cannot send again until it has a new producer id (kafkajs never asks for one).
 */
const ERRORS_OF_LOST_PRODUCER_STATE = ['OUT_OF_ORDER_SEQUENCE_NUMBER', 'DUPLICATE_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']

/**
 * The Kafka adapter, over kafkajs. Herald creates the topics it sends to and consumes
 * (with `kafka.numPartitions` partitions) and does not rely on the broker's
 * auto-creation. The producer is idempotent and waits for every in-sync replica
 * (`acks: -1`); a message's key picks its partition with the Java client's murmur2, so
 * Java and kafkajs producers agree on where a key goes. Each `subscribe` is one kafkajs
 * consumer (one group member) that commits an offset only when a message is acked.
 *
 * @example
 * const broker = createBroker(resolveKafkaSettings('localhost:9092', process.env, 'orders', {}), { logger, clientId: 'orders' })
 * await broker.publish([{ topic: 'orders', key: '42', value: Buffer.from('{}'), headers: {} }])
 */
export class KafkaBroker implements Broker {
  readonly kind = 'kafka' as const
  readonly #settings: KafkaSettings
  readonly #logger: Logger
  readonly #secrets: string[]
  readonly #kafka: Kafka
  #producer: Producer
  #renewing: Promise<void> | undefined
  readonly #admin: Admin
  /** `127.0.0.1:9092,…`: the addresses only, never credentials. */
  readonly #address: string
  readonly #topics: KafkaTopics
  readonly #subscriptions = new Set<KafkaSubscription>()
  readonly #outage: OutageLog
  #connecting: Promise<void> | undefined
  #connected = false
  #closed = false

  constructor (settings: KafkaSettings, deps: BrokerDeps) {
    this.#settings = settings
    this.#logger = deps.logger
    this.#secrets = kafkaSecrets(settings.options.client)
    rememberSecrets(this.#secrets)
    this.#address = settings.brokers.join(',')
    this.#outage = new OutageLog(deps.logger, 'Kafka', this.#address)
    this.#kafka = new Kafka({
      ...settings.options.client,
      brokers: settings.brokers,
      clientId: settings.clientId,
      logCreator: kafkaLogCreator(deps.logger, this.#secrets, this.#outage)
    })
    try {
      this.#producer = this.#newProducer()
    } catch (err) {
      throw new BrokerError(`kafkajs refused the producer options (kafka.producer): ${kafkaReason(err, this.#secrets)}`, { retriable: false, cause: err })
    }
    this.#admin = this.#kafka.admin()
    this.#topics = new KafkaTopics(this.#admin, settings, this.#address, deps.logger, this.#secrets)
  }

  #newProducer (): Producer {
    return this.#kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
      idempotent: true,
      // kafkajs keeps an idempotent producer's sequence numbers in order only with one request in flight.
      maxInFlightRequests: 1,
      ...this.#settings.options.producer
    })
  }

  /**
   * `sendBatch`, and once more on a new producer when Kafka lost track of this one's
   * sequence numbers (the messages may then be stored twice: at least once, never lost).
   */
  async #sendBatch (batch: Parameters<Producer['sendBatch']>[0]): Promise<void> {
    const producer = this.#producer
    try {
      await producer.sendBatch(batch)
    } catch (err) {
      if (this.#closed || !lostProducerState(err)) throw err
      await this.#renewProducer(producer, err)
      await this.#producer.sendBatch(batch)
    }
  }

  /** Replaces `failed` with a new producer (a new producer id), unless another send did already. */
  async #renewProducer (failed: Producer, err: unknown): Promise<void> {
    this.#renewing ??= (async () => {
      if (this.#producer !== failed) return
      this.#logger.warn({ address: this.#address, err: kafkaReason(err, this.#secrets) }, 'Kafka no longer follows this producer\'s sequence numbers (sends lost in an outage); sending again with a new producer')
      const fresh = this.#newProducer()
      await fresh.connect()
      if (this.#closed) {
        await fresh.disconnect().catch(() => {})
        throw brokerClosedError('Kafka')
      }
      this.#producer = fresh
      await failed.disconnect().catch(() => {})
    })().finally(() => { this.#renewing = undefined })
    await this.#renewing
  }

  async connect (): Promise<void> {
    if (this.#closed) throw brokerClosedError('Kafka')
    if (this.#connected) return
    this.#connecting ??= (async () => {
      try {
        await this.#probe()
        if (this.#closed) throw brokerClosedError('Kafka')
        await Promise.all([this.#producer.connect(), this.#admin.connect()])
        this.#connected = true
        this.#outage.reached()
      } catch (err) {
        if (err instanceof BrokerError) throw err
        await Promise.allSettled([this.#producer.disconnect(), this.#admin.disconnect()])
        if (refusedLogin(err)) {
          throw new BrokerError(`Kafka at ${this.#address} refused the login: ${kafkaReason(err, this.#secrets)}; check kafka.client.sasl (mechanism, user name and password)`, { code: ErrorCode.BrokerAuth, retriable: false, cause: err })
        }
        throw kafkaError(`could not reach Kafka at ${this.#address}`, err, this.#secrets)
      } finally {
        this.#connecting = undefined
      }
    })()
    return this.#connecting
  }

  /**
   * Checks that Kafka answers within `connectTimeout`, on a client of its own without
   * retries, before the producer and admin connect: kafkajs retries a connection that gets
   * no answer for minutes, and its `disconnect()` waits for a request in flight, so a
   * server that accepts and never answers would hold `connect()` (and `close()`) that long.
   */
  async #probe (): Promise<void> {
    const timeout = this.#settings.connectTimeout ?? 5_000
    const client = this.#settings.options.client ?? {}
    const probe = new Kafka({
      ...client,
      brokers: this.#settings.brokers,
      clientId: this.#settings.clientId,
      connectionTimeout: Math.min(client.connectionTimeout ?? timeout, timeout),
      authenticationTimeout: Math.min(client.authenticationTimeout ?? timeout, timeout),
      requestTimeout: timeout,
      enforceRequestTimeout: true,
      retry: { retries: 0 },
      // Its failure is the error connect() rejects with: its lines are not worth more than debug.
      logCreator: () => ({ namespace, log }) => this.#logger.debug({ kafkajs: namespace }, redactText(`kafkajs (connect check): ${String(log.message)}`, this.#secrets))
    }).admin()
    try {
      await probe.connect()
    } finally {
      await probe.disconnect().catch(() => {})
    }
  }

  async publish (messages: OutgoingMessage[]): Promise<Array<Error | undefined>> {
    if (messages.length === 0) return []
    try {
      await this.connect()
    } catch (err) {
      return messages.map(() => err as Error)
    }
    // A message Kafka can never take (a topic name it refuses, a header it cannot carry)
    // fails alone, before it can fail the request of its batch-mates.
    const results: Array<Error | undefined> = messages.map(() => undefined)
    const ready = messages.map((m, i) => {
      const checked = checkOutgoing('kafka', m)
      if (checked.error === undefined) return checked.message
      results[i] = checked.error
      return m
    })
    // A topic that cannot be created fails its own messages, not the others of the batch.
    const topicErrors = new Map<string, Error>()
    await Promise.all([...new Set(ready.filter((_m, i) => results[i] === undefined).map(m => m.topic))].map(async topic => {
      try {
        await this.#topics.ensure([topic])
      } catch (err) {
        topicErrors.set(topic, err as Error)
      }
    }))
    ready.forEach((m, i) => { results[i] ??= topicErrors.get(m.topic) })
    const sendable = ready.flatMap((_m, i) => results[i] === undefined ? [i] : [])
    if (sendable.length === 0) return results
    const error = await this.#send(sendable.map(i => ready[i]!))
    if (error !== undefined && !isRetriable(error) && sendable.length > 1) {
      // Kafka refuses a whole request for one message (over the topic's limit, a record it
      // cannot take): send them one by one (in order), so that only that one fails.
      for (const i of sendable) results[i] = await this.#send([ready[i]!])
    } else {
      for (const i of sendable) results[i] = error
    }
    return results
  }

  /** Sends messages in one request; resolves with the error that stopped them, if one did. */
  async #send (messages: OutgoingMessage[]): Promise<BrokerError | undefined> {
    const byTopic = new Map<string, Array<{ key: string | null, value: Buffer, headers: Record<string, string> }>>()
    for (const m of messages) {
      let list = byTopic.get(m.topic)
      if (list === undefined) byTopic.set(m.topic, list = [])
      list.push({ key: m.key ?? null, value: m.value, headers: { ...m.headers } })
    }
    const startedAt = Date.now()
    try {
      await this.#sendBatch({
        topicMessages: [...byTopic].map(([topic, batch]) => ({ topic, messages: batch })),
        acks: -1
      })
      this.#outage.back('producer')
      this.#outage.reached()
      return undefined
    } catch (err) {
      if (!this.#closed && kafkaRetriable(err)) this.#outage.lost('producer', kafkaReason(err, this.#secrets), startedAt)
      const what = `Kafka at ${this.#address} did not acknowledge ${messages.length} message${messages.length === 1 ? '' : 's'} to ${[...byTopic.keys()].map(t => `"${t}"`).join(', ')}`
      if (this.#closed) return new BrokerError(`${what}: the broker connection was closed`, { retriable: false, cause: err })
      const error = kafkaError(what, err, this.#secrets)
      // kafkajs calls these final; they are this producer's state, not the message's: sending again can work.
      return lostProducerState(err) ? new BrokerError(error.message, { retriable: true, cause: err }) : error
    }
  }

  async subscribe (given: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    // The group reads its own retry topics too (dead letters replayed to it only).
    const { options, onDelivery } = withGroupRetryTopics(given, handler)
    await this.connect()
    await this.#topics.ensure(options.topics)
    await this.#topics.ensure(options.deadLetterTopics.filter(t => !options.topics.includes(t)), true)
    let consumer: Consumer
    // The subscription reports to the assigner the partitions it holds a message of; it exists once the consumer does.
    let subscription: KafkaSubscription | undefined
    try {
      consumer = this.#kafka.consumer({
        ...KAFKA_CONSUMER_DEFAULTS,
        allowAutoTopicCreation: false,
        ...this.#settings.options.consumer,
        retry: kafkaConsumerRetry(this.#settings.options),
        partitionAssigners: this.#settings.options.consumer?.partitionAssigners ?? [heldStickyAssigner(() => subscription?.claims() ?? { held: {}, owned: {} }), PartitionAssigners.roundRobin],
        groupId: options.group
      })
    } catch (err) {
      throw new BrokerError(`kafkajs refused the consumer options of group "${options.group}" (kafka.consumer): ${kafkaReason(err, this.#secrets)}`, { retriable: false, cause: err })
    }
    const sub: KafkaSubscription = subscription = new KafkaSubscription({
      consumer,
      admin: this.#admin,
      options,
      onDelivery,
      logger: this.#logger,
      secrets: this.#secrets,
      brokers: this.#address,
      outage: this.#outage,
      onClosed: () => this.#subscriptions.delete(sub)
    })
    this.#subscriptions.add(sub)
    try {
      await sub.start(JOIN_TIMEOUT_MS)
    } catch (err) {
      this.#subscriptions.delete(sub)
      throw err
    }
    if (this.#closed) {
      await sub.abandon()
      throw brokerClosedError('Kafka')
    }
    return sub
  }

  async health (): Promise<BrokerHealth> {
    const detail = `kafka ${this.#address}`
    if (this.#closed) return { ok: false, broker: 'kafka', detail: `${detail}: closed` }
    try {
      await withTimeout(this.connect().then(async () => await this.#admin.describeCluster()), HEALTH_TIMEOUT_MS, () => new BrokerError(`no answer within ${HEALTH_TIMEOUT_MS / 1000} s`))
      return { ok: true, broker: 'kafka', detail }
    } catch (err) {
      return { ok: false, broker: 'kafka', detail: `${detail}: ${kafkaReason(err, this.#secrets)}` }
    }
  }

  /** Publishes a retry to the group's own topic `<topic>.<group>.retry`, whose subscriptions hold it back until its `herald-retry-at` (DueGate in kafka-part.ts). */
  async scheduleRetry (group: string, message: OutgoingMessage): Promise<void> {
    const [err] = await this.publish([{ ...message, topic: groupRetryTopic(message.topic, group) }])
    if (err !== undefined) throw err
  }

  /** End offsets minus the group's committed offsets, per topic (kafka-lag.ts). */
  async lag (group: string, topics: readonly string[]): Promise<TopicLag[]> {
    await this.connect()
    return await kafkaLag(this.#admin, group, topics)
  }

  /** A pass over a dead-letter topic, its removals recorded in the commits of `herald-dlq.<topic>` (kafka-dead-letters.ts). */
  async deadLetters (destination: string): Promise<DeadLetterCursor> {
    await this.connect()
    const send = async (message: OutgoingMessage): Promise<Error | undefined> => (await this.publish([message]))[0]
    return await kafkaDeadLetters({ kafka: this.#kafka, admin: this.#admin, address: this.#address, secrets: this.#secrets, send }, destination)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.allSettled([...this.#subscriptions].map(s => s.abandon()))
    await this.#connecting?.catch(() => {})
    this.#connected = false
    const results = await Promise.allSettled([this.#producer.disconnect(), this.#admin.disconnect()])
    for (const r of results) {
      if (r.status === 'rejected') this.#logger.warn({ err: kafkaReason(r.reason, this.#secrets) }, 'could not disconnect from Kafka cleanly')
    }
  }
}

function lostProducerState (err: unknown): boolean {
  let e: unknown = err
  while (e instanceof Error && e.cause instanceof Error && e.cause !== e) e = e.cause
  return [...kafkaErrorTypes(err), ...kafkaErrorTypes(e)].some(t => ERRORS_OF_LOST_PRODUCER_STATE.includes(t))
}

/** A SASL login Kafka answered with a refusal (not a listener without SASL, nor no answer). */
function refusedLogin (err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause === e ? undefined : e.cause) {
    if (e.name === 'KafkaJSSASLAuthenticationError' || kafkaErrorTypes(e).includes('SASL_AUTHENTICATION_FAILED')) return true
  }
  return false
}
