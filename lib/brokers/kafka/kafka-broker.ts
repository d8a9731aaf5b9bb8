import { Kafka, Partitioners, type Admin, type Consumer, type Producer } from 'kafkajs'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Broker, BrokerDeps, BrokerHealth, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription } from '../broker.js'
import { KAFKA_CONSUMER_DEFAULTS, type KafkaSettings } from './kafka-config.js'
import { kafkaError, kafkaErrorTypes, kafkaReason, kafkaSecrets } from './kafka-errors.js'
import { kafkaLogCreator } from './kafka-log.js'
import { KafkaSubscription } from './kafka-subscription.js'

/** How long `subscribe` waits for the group to give the new member its partitions (ms). */
const JOIN_TIMEOUT_MS = 60_000

/** How long `health` waits for the cluster to answer (ms). */
const HEALTH_TIMEOUT_MS = 5_000

/** createTopics answers meaning "not yours to create": the topics are managed elsewhere. */
const ERRORS_OF_DENIED_CREATE = ['TOPIC_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED']

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
  readonly #producer: Producer
  readonly #admin: Admin
  /** `127.0.0.1:9092,…`: the addresses only, never credentials. */
  readonly #address: string
  readonly #knownTopics = new Set<string>()
  readonly #creating = new Map<string, Promise<void>>()
  readonly #subscriptions = new Set<KafkaSubscription>()
  #connecting: Promise<void> | undefined
  #connected = false
  #closed = false

  constructor (settings: KafkaSettings, deps: BrokerDeps) {
    this.#settings = settings
    this.#logger = deps.logger
    this.#secrets = kafkaSecrets(settings.options.client)
    this.#address = settings.brokers.join(',')
    this.#kafka = new Kafka({
      ...settings.options.client,
      brokers: settings.brokers,
      clientId: settings.clientId,
      logCreator: kafkaLogCreator(deps.logger, this.#secrets)
    })
    try {
      this.#producer = this.#kafka.producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
        idempotent: true,
        // kafkajs keeps an idempotent producer's sequence numbers in order only with one request in flight.
        maxInFlightRequests: 1,
        ...settings.options.producer
      })
    } catch (err) {
      throw new BrokerError(`kafkajs refused the producer options (kafka.producer): ${kafkaReason(err, this.#secrets)}`, { retriable: false, cause: err })
    }
    this.#admin = this.#kafka.admin()
  }

  async connect (): Promise<void> {
    if (this.#closed) throw this.#closedError()
    if (this.#connected) return
    this.#connecting ??= (async () => {
      try {
        await Promise.all([this.#producer.connect(), this.#admin.connect()])
        this.#connected = true
      } catch (err) {
        await Promise.allSettled([this.#producer.disconnect(), this.#admin.disconnect()])
        throw kafkaError(`could not reach Kafka at ${this.#address}`, err, this.#secrets)
      } finally {
        this.#connecting = undefined
      }
    })()
    return this.#connecting
  }

  async publish (messages: OutgoingMessage[]): Promise<Array<Error | undefined>> {
    if (messages.length === 0) return []
    const topics = [...new Set(messages.map(m => m.topic))]
    try {
      await this.connect()
      await this.#ensureTopics(topics)
    } catch (err) {
      return messages.map(() => err as Error)
    }
    const byTopic = new Map<string, Array<{ key: string | null, value: Buffer, headers: Record<string, string> }>>()
    for (const m of messages) {
      let list = byTopic.get(m.topic)
      if (list === undefined) byTopic.set(m.topic, list = [])
      list.push({ key: m.key ?? null, value: m.value, headers: { ...m.headers } })
    }
    try {
      await this.#producer.sendBatch({
        topicMessages: [...byTopic].map(([topic, batch]) => ({ topic, messages: batch })),
        acks: -1
      })
      return messages.map(() => undefined)
    } catch (err) {
      const what = `Kafka at ${this.#address} did not acknowledge ${messages.length} message${messages.length === 1 ? '' : 's'} to ${topics.map(t => `"${t}"`).join(', ')}`
      const error = this.#closed ? new BrokerError(`${what}: the broker connection was closed`, { retriable: false, cause: err }) : kafkaError(what, err, this.#secrets)
      return messages.map(() => error)
    }
  }

  async subscribe (options: SubscribeOptions, onDelivery: DeliveryHandler): Promise<Subscription> {
    await this.connect()
    await this.#ensureTopics([...new Set([...options.topics, ...options.deadLetterTopics])])
    let partitions: number
    try {
      const { topics } = await this.#admin.fetchTopicMetadata({ topics: options.topics })
      partitions = topics.reduce((sum, t) => sum + t.partitions.length, 0)
    } catch (err) {
      throw kafkaError(`could not read the partitions of ${options.topics.map(t => `"${t}"`).join(', ')} from Kafka at ${this.#address}`, err, this.#secrets)
    }
    let consumer: Consumer
    try {
      consumer = this.#kafka.consumer({
        ...KAFKA_CONSUMER_DEFAULTS,
        allowAutoTopicCreation: false,
        ...this.#settings.options.consumer,
        groupId: options.group
      })
    } catch (err) {
      throw new BrokerError(`kafkajs refused the consumer options of group "${options.group}" (kafka.consumer): ${kafkaReason(err, this.#secrets)}`, { retriable: false, cause: err })
    }
    const subscription = new KafkaSubscription({
      consumer,
      options,
      onDelivery,
      logger: this.#logger,
      secrets: this.#secrets,
      brokers: this.#address,
      onClosed: () => this.#subscriptions.delete(subscription)
    })
    this.#subscriptions.add(subscription)
    try {
      await subscription.start(partitions, JOIN_TIMEOUT_MS)
    } catch (err) {
      this.#subscriptions.delete(subscription)
      throw err
    }
    if (this.#closed) {
      await subscription.abandon()
      throw this.#closedError()
    }
    return subscription
  }

  async health (): Promise<BrokerHealth> {
    const detail = `kafka ${this.#address}`
    if (this.#closed) return { ok: false, broker: 'kafka', detail: `${detail}: closed` }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_TIMEOUT_MS / 1000} s`)), HEALTH_TIMEOUT_MS)
    })
    try {
      await Promise.race([this.connect().then(async () => await this.#admin.describeCluster()), timeout])
      return { ok: true, broker: 'kafka', detail }
    } catch (err) {
      return { ok: false, broker: 'kafka', detail: `${detail}: ${kafkaReason(err, this.#secrets)}` }
    } finally {
      clearTimeout(timer)
    }
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

  /** Creates the topics Herald has not seen yet; one that already exists is fine. */
  async #ensureTopics (topics: string[]): Promise<void> {
    await Promise.all(topics.filter(t => !this.#knownTopics.has(t)).map(async topic => {
      let creating = this.#creating.get(topic)
      if (creating === undefined) {
        creating = this.#createTopic(topic).finally(() => this.#creating.delete(topic))
        this.#creating.set(topic, creating)
      }
      await creating
    }))
  }

  async #createTopic (topic: string): Promise<void> {
    const { numPartitions, options } = this.#settings
    // One topic per request: kafkajs waits for leaders only when every topic of a request was new.
    try {
      await this.#admin.createTopics({
        topics: [{ topic, numPartitions, ...(options.replicationFactor === undefined ? {} : { replicationFactor: options.replicationFactor }) }],
        waitForLeaders: true
      })
    } catch (err) {
      const types = kafkaErrorTypes(err)
      if (types.length > 0 && types.every(t => ERRORS_OF_DENIED_CREATE.includes(t))) {
        // Topics managed by the platform team: use the topic as it is (sending fails clearly if it is missing).
        this.#logger.warn({ topic, err: kafkaReason(err, this.#secrets) }, 'not allowed to create the Kafka topic; assuming it exists')
      } else {
        throw kafkaError(`could not create Kafka topic "${topic}" (${numPartitions} partitions) at ${this.#address}`, err, this.#secrets)
      }
    }
    this.#knownTopics.add(topic)
  }

  #closedError (): BrokerError {
    return new BrokerError('the Kafka broker connection is closed; create a new Messaging instance', { retriable: false })
  }
}
