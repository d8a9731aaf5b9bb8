import type { Admin } from 'kafkajs'
import { BrokerError, ErrorCode } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Backoff, sleep } from '../../time.js'
import type { KafkaSettings } from './kafka-config.js'
import { kafkaError, kafkaErrorTypes, kafkaReason } from './kafka-errors.js'

/**
 * `max.message.bytes` of the dead-letter topics Herald creates: Kafka's default (1 MiB +
 * 12 bytes) plus room for the `herald-dlq-*` headers, so a message that fit its topic fits
 * its dead letter too. (A bigger one is stored as a pointer to the original: see the README.)
 */
const DEAD_LETTER_MAX_MESSAGE_BYTES = 1_048_588 + 64 * 1024

/** What createTopics(waitForLeaders) may throw for a topic it did create, when asked for its leaders too soon. */
const ERRORS_OF_TOPIC_NOT_READY = ['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']

/** createTopics answers meaning "not yours to create": the topics are managed elsewhere. */
const ERRORS_OF_DENIED_CREATE = ['TOPIC_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED']

/**
 * The topics a Kafka broker sends to and consumes: created once each, with
 * `kafka.numPartitions` partitions (dead-letter topics with room for the dead-letter
 * headers), ready (every partition has a leader) before anyone uses them.
 */
export class KafkaTopics {
  readonly #admin: Admin
  readonly #settings: KafkaSettings
  readonly #address: string
  readonly #logger: Logger
  readonly #secrets: string[]
  readonly #knownTopics = new Set<string>()
  readonly #creating = new Map<string, Promise<void>>()

  constructor (admin: Admin, settings: KafkaSettings, address: string, logger: Logger, secrets: string[]) {
    this.#admin = admin
    this.#settings = settings
    this.#address = address
    this.#logger = logger
    this.#secrets = secrets
  }

  /** Creates the topics Herald has not seen yet; one that already exists is fine. */
  async ensure (topics: string[], deadLetter = false): Promise<void> {
    await Promise.all(topics.filter(t => !this.#knownTopics.has(t)).map(async topic => {
      let creating = this.#creating.get(topic)
      if (creating === undefined) {
        creating = this.#createTopic(topic, deadLetter).finally(() => this.#creating.delete(topic))
        this.#creating.set(topic, creating)
      }
      await creating
    }))
  }

  async #createTopic (topic: string, deadLetter = false): Promise<void> {
    const { numPartitions, options } = this.#settings
    const configEntries = deadLetter ? [{ name: 'max.message.bytes', value: String(DEAD_LETTER_MAX_MESSAGE_BYTES) }] : []
    // One topic per request: kafkajs waits for leaders only when every topic of a request was new.
    try {
      await this.#admin.createTopics({
        topics: [{ topic, numPartitions, configEntries, ...(options.replicationFactor === undefined ? {} : { replicationFactor: options.replicationFactor }) }],
        waitForLeaders: true
      })
    } catch (err) {
      const types = kafkaErrorTypes(err)
      if (types.some(t => ERRORS_OF_TOPIC_NOT_READY.includes(t))) {
        // Created, but kafkajs asked for its leaders before the controller had spread them
        // (it retries only LEADER_NOT_AVAILABLE): wait for them here.
        await this.#waitForLeaders(topic, err)
      } else if (types.length > 0 && types.every(t => ERRORS_OF_DENIED_CREATE.includes(t))) {
        // Topics managed by the platform team: use the topic as it is, if it is there. A
        // missing one would have kafkajs retry for seconds (an unknown topic may be new), then
        // the outbox keep the messages for a topic that will not appear by itself: fail now.
        const listed = await this.#admin.listTopics().catch(() => undefined)
        if (listed !== undefined && !listed.includes(topic)) {
          throw new BrokerError(`Kafka topic "${topic}" does not exist at ${this.#address}, and this client may not create it (${types.join(', ')}): create it (or have it created), or grant this principal CREATE on it`, { code: ErrorCode.UnknownTopic, retriable: false, cause: err })
        }
        this.#logger.warn({ topic, err: kafkaReason(err, this.#secrets) }, 'not allowed to create the Kafka topic; it exists, using it as it is')
      } else {
        throw kafkaError(`could not create Kafka topic "${topic}" (${numPartitions} partitions) at ${this.#address}`, err, this.#secrets)
      }
    }
    this.#knownTopics.add(topic)
  }

  /** Waits until every partition of a topic just created has a leader (up to ~10 s). */
  async #waitForLeaders (topic: string, cause: unknown): Promise<void> {
    const backoff = new Backoff(100, 2_000)
    for (let waited = 0; waited < 10_000;) {
      const pause = backoff.next()
      await sleep(pause)
      waited += pause
      const metadata = await this.#admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined)
      const partitions = metadata?.topics.find(t => t.name === topic)?.partitions ?? []
      if (partitions.length > 0 && partitions.every(p => p.leader >= 0)) return
    }
    throw kafkaError(`Kafka topic "${topic}" was created at ${this.#address} but its partitions got no leader within 10 s`, cause, this.#secrets)
  }
}
