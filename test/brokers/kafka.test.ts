/**
 * The Kafka adapter against a live broker (`scripts/kafka.sh start`, or
 * KAFKA_BOOTSTRAP_SERVERS). Tests go through the Broker interface; a plain kafkajs
 * client checks what is on the wire. Every test uses fresh topic and group names.
 * A broker that cannot be reached fails the tests: nothing is skipped.
 */
import { randomUUID } from 'node:crypto'
import { expect } from 'chai'
import { Kafka, logLevel, type Consumer as RawConsumer, type Producer as RawProducer, type Admin as RawAdmin, type IHeaders } from 'kafkajs'
import type { Broker, Delivery, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription } from '../../lib/brokers/broker.js'
import { createBroker } from '../../lib/brokers/kafka/index.js'
import { resolveKafkaSettings, type KafkaOptions } from '../../lib/brokers/kafka/kafka-config.js'
import { BrokerError, ConfigError } from '../../lib/errors.js'
import { createMessaging, DLQ_HEADERS, messageHandler, NonRetriableError, startConsumers, type Context, type Runner } from '../../lib/index.js'
import { cleanUpRun } from '../cleanup.js'
import { eventually, randomName, sleep } from '../helpers.js'
import { collector, message } from '../support/deliveries.js'
import { RecordingLogger } from '../support/recording-logger.js'

const BOOTSTRAP = process.env.KAFKA_BOOTSTRAP_SERVERS ?? '127.0.0.1:9092'

/**
 * Faster group work than the production defaults (30 s session, 3 s heartbeat): a second
 * member joins within a heartbeat, and a wait longer than the session proves heartbeats go on.
 */
const SESSION_TIMEOUT_MS = 6000
const TEST_OPTIONS: KafkaOptions = {
  consumer: { sessionTimeout: SESSION_TIMEOUT_MS, heartbeatInterval: 500, maxWaitTimeInMs: 200 }
}

/** How often the log says this process joined `group`. */
const joins = (logger: RecordingLogger, group: string): number =>
  logger.records.filter(r => r.msg === 'joined Kafka consumer group' && r.fields.group === group).length

const partitionOf = (d: Delivery): number => Number(/\/(\d+)@\d+$/.exec(d.id)?.[1])

describe('Kafka broker', function () {
  this.timeout(30_000)

  let logger: RecordingLogger
  let brokers: Broker[]
  let raw: Array<RawConsumer | RawProducer | RawAdmin>
  let rawKafka: Kafka

  const newBroker = (options: KafkaOptions = TEST_OPTIONS, bootstrap = BOOTSTRAP): Broker => {
    const broker = createBroker(resolveKafkaSettings(bootstrap, {}, 'herald-test', options), { logger, clientId: 'herald-test' })
    brokers.push(broker)
    return broker
  }

  const subscribe = async (broker: Broker, options: Partial<SubscribeOptions> & { topics: string[] }, handler: DeliveryHandler): Promise<Subscription> =>
    await broker.subscribe({ group: randomName('herald-test-group'), maxInFlight: 16, deadLetterTopics: [], ...options }, handler)

  const rawAdmin = async (): Promise<RawAdmin> => {
    const admin = rawKafka.admin()
    raw.push(admin)
    await admin.connect()
    return admin
  }

  beforeEach(() => {
    logger = new RecordingLogger()
    brokers = []
    raw = []
    rawKafka = new Kafka({ brokers: BOOTSTRAP.split(','), clientId: 'herald-test-raw', logLevel: logLevel.NOTHING })
  })

  afterEach(async () => {
    // Closing a broker leaves its groups without waiting for unsettled deliveries.
    await Promise.all(brokers.map(async b => await b.close()))
    await Promise.all(raw.map(async c => await c.disconnect()))
  })

  // This run's topics and groups (their names carry RUN_ID) go, so the shared Kafka does not fill up.
  after(async () => { await cleanUpRun('kafka', []) })

  it('reports itself healthy with the broker address and no secret', async () => {
    const health = await newBroker().health()
    expect(health).to.deep.equal({ ok: true, broker: 'kafka', detail: `kafka ${BOOTSTRAP}` })
  })

  it('creates the topics it publishes to and the dead-letter topics of a subscription, with the configured partitions', async () => {
    const broker = newBroker({ ...TEST_OPTIONS, numPartitions: 2 })
    const sent = randomName('herald-test-sent')
    const consumed = randomName('herald-test-consumed')
    const dlq = `${consumed}.group.dlq`
    expect(await broker.publish([message(sent, '{}')])).to.deep.equal([undefined])
    await subscribe(broker, { topics: [consumed], deadLetterTopics: [dlq] }, async d => await d.ack())

    const { topics } = await (await rawAdmin()).fetchTopicMetadata({ topics: [sent, consumed, dlq] })
    expect(Object.fromEntries(topics.map(t => [t.name, t.partitions.length]))).to.deep.equal({ [sent]: 2, [consumed]: 2, [dlq]: 2 })
  })

  it('many topics with many partitions created at once are all ready when subscribe resolves (Kafka may answer "does not host this topic-partition" right after creating one)', async function () {
    this.timeout(60_000)
    const broker = newBroker({ ...TEST_OPTIONS, numPartitions: 8 })
    const topics = Array.from({ length: 6 }, () => randomName('herald-test-many'))
    await subscribe(broker, { topics, deadLetterTopics: topics.map(t => `${t}.group.dlq`) }, async d => await d.ack())
    const { topics: described } = await (await rawAdmin()).fetchTopicMetadata({ topics: [...topics, ...topics.map(t => `${t}.group.dlq`)] })
    expect(described).to.have.length(12)
    for (const t of described) expect(t.partitions.every(p => p.leader >= 0), t.name).to.equal(true)
  })

  it('two subscriptions in one group split the partitions: no partition is read by both (each message once: the contract suite)', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const group = randomName('herald-test-group')
    const a = collector()
    const b = collector()
    await subscribe(broker, { topics: [topic], group }, a.handler)
    await subscribe(broker, { topics: [topic], group }, b.handler)

    const sent = Array.from({ length: 30 }, (_, i) => `m${i}`)
    await broker.publish(sent.map((v, i) => message(topic, v, `key-${i}`)))
    await eventually(() => a.deliveries.length + b.deliveries.length >= 30, '30 deliveries')
    expect([...a.values(), ...b.values()].sort()).to.deep.equal([...sent].sort())
    expect(a.deliveries.length, 'first member got none').to.be.greaterThan(0)
    expect(b.deliveries.length, 'second member got none').to.be.greaterThan(0)
    const partitionsOfA = new Set(a.deliveries.map(partitionOf))
    expect(b.deliveries.map(partitionOf).filter(p => partitionsOfA.has(p)), 'a partition read by both members').to.deep.equal([])
  })

  it('acked messages are not delivered to the group again; a released one is, and nothing after it is committed', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const group = randomName('herald-test-group')
    // One key, so one partition and one order: m1, m2, m3.
    await broker.publish(['m1', 'm2', 'm3'].map(v => message(topic, v, 'same-key')))

    let sub: Subscription | undefined
    let shutDown: Promise<void> | undefined
    const first = collector(async d => {
      const v = d.value.toString()
      if (v === 'm1') {
        await d.ack()
      } else if (v === 'm2' && first.deliveries.filter(x => x.value.toString() === 'm2').length === 1) {
        // Held long enough to be parked (its partition paused), then given back.
        await sleep(1500)
        await d.release()
      } else if (v === 'm2') {
        await d.ack()
      } else {
        // A shutdown catches m3 waiting: stop fetching, give it back, leave.
        await sub!.pause()
        await d.release()
        shutDown = sub!.close()
      }
    })
    sub = await subscribe(broker, { topics: [topic], group }, first.handler)
    await eventually(() => shutDown !== undefined, 'the first member to shut down')
    await shutDown
    // A release uses up no attempt: m2 comes back with the count it had.
    expect(first.deliveries.map(d => `${d.value.toString()}#${d.redeliveries}`)).to.deep.equal(['m1#0', 'm2#0', 'm2#0', 'm3#0'])

    const second = collector()
    await subscribe(broker, { topics: [topic], group }, second.handler)
    // A sentinel after m3 in the same partition: once it arrives, whatever came before it did too.
    await broker.publish([message(topic, 'sentinel', 'same-key')])
    await eventually(() => second.values().includes('sentinel'), 'the sentinel')
    // m1 and m2 sit before m3 in the partition: had they not been committed, they would come first.
    expect(second.values()).to.deep.equal(['m3', 'sentinel'])
  })

  it('close() stops fetching, waits for the message in hand to be acked, commits it, then leaves', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const group = randomName('herald-test-group')
    await broker.publish([message(topic, 'slow', 'slow-key')])
    let acked = false
    const first = collector(async d => {
      await sleep(1500) // long enough to be parked
      await d.ack()
      acked = true
    })
    const sub = await subscribe(broker, { topics: [topic], group }, first.handler)
    await eventually(() => first.deliveries.length === 1, 'the slow message')
    const closing = sub.close()
    const later = Array.from({ length: 6 }, (_, i) => `later-${i}`)
    await broker.publish(later.map((v, i) => message(topic, v, `key-${i}`)))
    await closing
    expect(acked, 'close() resolved before the message in hand was settled').to.equal(true)
    expect(first.values()).to.deep.equal(['slow'])

    const second = collector()
    await subscribe(broker, { topics: [topic], group }, second.handler)
    // A sentinel in the slow message's partition: had it not been committed, it would come first.
    await broker.publish([message(topic, 'sentinel', 'slow-key')])
    await eventually(() => second.values().includes('sentinel') && second.deliveries.length >= later.length + 1, 'the later messages and the sentinel')
    expect(second.values().sort()).to.deep.equal([...later, 'sentinel'])
  })

  it('a message waiting for a retry holds back neither the other partitions nor the group membership', async function () {
    this.timeout(40_000)
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const group = randomName('herald-test-group')
    const waitMs = SESSION_TIMEOUT_MS + 1500
    let waiting: Delivery | undefined
    let ackedWaitingAt = Infinity
    const arrivals = new Map<string, number>()
    const c = collector(async d => {
      arrivals.set(d.value.toString(), Date.now())
      if (d.value.toString() !== 'wait') {
        await d.ack()
        return
      }
      waiting = d
      // What the runner does during a retry delay: call keepAlive every few seconds.
      const start = Date.now()
      while (Date.now() - start < waitMs) {
        await d.keepAlive?.()
        await sleep(2000)
      }
      ackedWaitingAt = Date.now()
      await d.ack()
    })
    await subscribe(broker, { topics: [topic], group }, c.handler)
    const joinsBefore = joins(logger, group)
    expect(joinsBefore).to.equal(1)

    await broker.publish([message(topic, 'wait', 'waiting-key')])
    await eventually(() => waiting !== undefined, 'the waiting message')
    const waitingPartition = partitionOf(waiting!)
    // Published after the wait began, so they come in later fetches than the waiting message.
    const others = Array.from({ length: 12 }, (_, i) => `m${i}`)
    await broker.publish([...others.map((v, i) => message(topic, v, `key-${i}`)), message(topic, 'same-key', 'waiting-key')])
    await eventually(() => c.deliveries.length === others.length + 2, 'every message', waitMs + 10_000)

    const onOtherPartitions = c.deliveries.filter(d => partitionOf(d) !== waitingPartition).map(d => d.value.toString())
    const onSamePartition = c.deliveries.filter(d => partitionOf(d) === waitingPartition && d !== waiting && d.key !== 'waiting-key').map(d => d.value.toString())
    expect(onOtherPartitions.length, 'no message on another partition').to.be.greaterThan(0)
    // Other keys flow, on other partitions and on the waiting message's own partition (its lanes).
    for (const v of [...onOtherPartitions, ...onSamePartition]) expect(arrivals.get(v), `${v} waited for the retry`).to.be.lessThan(ackedWaitingAt)
    // The waiting message's key keeps its order: the next message of that key does not pass it.
    expect(arrivals.get('same-key'), 'the same key passed the waiting message').to.be.at.least(ackedWaitingAt)
    expect(joins(logger, group), 'the group rebalanced during the wait').to.equal(joinsBefore)
  })

  it('messages with different keys in one partition run side by side; the same key waits, and nothing past an unsettled offset is committed', async () => {
    const broker = createBroker(resolveKafkaSettings(BOOTSTRAP, {}, 'herald-test', { ...TEST_OPTIONS, numPartitions: 1 }), { logger, clientId: 'herald-test' })
    brokers.push(broker)
    const topic = randomName('herald-test-topic')
    const group = randomName('herald-test-group')
    await broker.publish([message(topic, 'a1', 'a'), message(topic, 'a2', 'a'), message(topic, 'b1', 'b')])
    const held: Delivery[] = []
    const first = collector(async d => {
      if (d.value.toString() === 'a1') held.push(d)
      else await d.ack()
    })
    const sub = await subscribe(broker, { topics: [topic], group }, first.handler)
    // b1 sits behind a1 in the one partition, yet runs while a1 is unsettled; a2 waits for a1.
    await eventually(() => first.values().includes('b1'), 'b1 while a1 is unsettled')
    expect(first.values()).to.deep.equal(['a1', 'b1'])
    await sub.pause()
    await held[0]!.release()
    await sub.close()

    // a1 was given back: the commit stayed before it, so a1 and a2 come again (b1 was acked: it does not).
    const second = collector()
    await subscribe(broker, { topics: [topic], group }, second.handler)
    await broker.publish([message(topic, 'sentinel', 'b')])
    await eventually(() => second.values().includes('sentinel'), 'the sentinel')
    expect(second.values().filter(v => v !== 'sentinel')).to.deep.equal(['a1', 'a2'])
  })

  it('messages with the same key arrive in order, also when one of them is slow', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const keys = ['alpha', 'beta', 'gamma']
    for (let batch = 0; batch < 3; batch++) {
      const messages: OutgoingMessage[] = []
      for (let i = 0; i < 5; i++) for (const key of keys) messages.push(message(topic, JSON.stringify({ key, n: batch * 5 + i }), key))
      expect((await broker.publish(messages)).every(r => r === undefined)).to.equal(true)
    }
    const c = collector(async d => {
      const { n } = JSON.parse(d.value.toString()) as { n: number }
      // Longer than the adapter keeps a delivery inside kafkajs: the partition is paused and resumed.
      await sleep(n === 4 ? 1300 : Math.random() * 5)
      await d.ack()
    })
    await subscribe(broker, { topics: [topic], maxInFlight: 4 }, c.handler)
    await eventually(() => c.deliveries.length === 45, '45 deliveries')

    for (const key of keys) {
      const seen = c.deliveries.filter(d => d.key === key).map(d => (JSON.parse(d.value.toString()) as { n: number }).n)
      expect(seen, key).to.deep.equal(Array.from({ length: 15 }, (_, i) => i))
    }
  })

  it('a plain kafkajs consumer reads what Herald published: exactly the headers sent, the Java client\'s partition for the key', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const headers = { 'event-name': 'order.placed', 'event-id': randomUUID(), 'event-source': 'shop', 'content-type': 'application/json' }
    await broker.publish([message(topic, '{"order":42}', 'order-42', headers), message(topic, '{"user":1}', 'user-1', {})])

    const received: Array<{ partition: number, key: string | undefined, value: string, headers: IHeaders }> = []
    const consumer = rawKafka.consumer({ groupId: randomName('herald-test-raw'), sessionTimeout: SESSION_TIMEOUT_MS, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
    raw.push(consumer)
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message: m }) => {
        received.push({ partition, key: m.key?.toString(), value: m.value?.toString() ?? '', headers: m.headers ?? {} })
      }
    })
    await eventually(() => received.length === 2, '2 records')

    const order = received.find(r => r.key === 'order-42')!
    expect(order.value).to.equal('{"order":42}')
    expect(Object.fromEntries(Object.entries(order.headers).map(([k, v]) => [k, String(v)]))).to.deep.equal(headers)
    expect(received.find(r => r.key === 'user-1')!.headers).to.deep.equal({})
    // murmur2 as in org.apache.kafka.common.utils.Utils, over 3 partitions.
    expect(order.partition).to.equal(0)
    expect(received.find(r => r.key === 'user-1')!.partition).to.equal(2)
  })

  it('a record from a plain kafkajs producer is delivered: buffer and repeated headers as strings, no key, a null value as empty', async () => {
    const broker = newBroker()
    const topic = randomName('herald-test-topic')
    const c = collector()
    await subscribe(broker, { topics: [topic] }, c.handler)

    const producer = rawKafka.producer()
    raw.push(producer)
    await producer.connect()
    await producer.send({
      topic,
      messages: [
        { key: 'same', value: '{"plain":true}', headers: { 'x-buffer': Buffer.from('from a buffer'), 'x-string': 'text', 'x-repeated': ['first', 'last'] } },
        { key: 'same', value: null }
      ]
    })
    await eventually(() => c.deliveries.length === 2, '2 deliveries')

    const [plain, tombstone] = c.deliveries
    expect(plain!.value.toString()).to.equal('{"plain":true}')
    expect(plain!.key).to.equal('same')
    expect(plain!.headers).to.deep.equal({ 'x-buffer': 'from a buffer', 'x-string': 'text', 'x-repeated': 'last' })
    expect(tombstone!.value.length).to.equal(0)
    expect(tombstone!.headers).to.deep.equal({})
  })

  it('a broker that cannot be reached fails with a BrokerError naming Kafka and the address, never the password', async () => {
    const password = 'pw-' + randomUUID()
    const broker = newBroker({
      client: { retry: { retries: 1, initialRetryTime: 100 }, connectionTimeout: 1000, sasl: { mechanism: 'plain', username: 'herald', password } }
    }, '127.0.0.1:1')

    const err = await broker.connect().then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(BrokerError)
    expect((err as BrokerError).message).to.match(/^could not reach Kafka at 127\.0\.0\.1:1: /)
    expect((err as BrokerError).retriable).to.equal(true)

    const results = await broker.publish([message(randomName('herald-test-topic'), '{}')])
    expect(results[0]).to.be.instanceOf(BrokerError)
    const health = await broker.health()
    expect(health.ok).to.equal(false)
    expect(health.detail).to.match(/^kafka 127\.0\.0\.1:1: /)

    const everything = JSON.stringify([String(err), String(results[0]), health, logger.records])
    expect(everything).not.to.include(password)
  })

  it('rejects at start-up the client options kafkajs would refuse later, naming the option and the fix', () => {
    expect(() => resolveKafkaSettings(BOOTSTRAP, {}, 'herald-test', { client: { retry: { retries: 0 } } }))
      .to.throw(ConfigError, /^kafka\.client\.retry\.retries: is 0, but Herald's idempotent Kafka producer needs at least 1 retry; set kafka\.producer\.retry\.retries/)
    expect(() => resolveKafkaSettings(BOOTSTRAP, {}, 'herald-test', { client: { retry: { retries: 0 } }, producer: { retry: { retries: 3 } } })).not.to.throw()
    expect(() => resolveKafkaSettings(BOOTSTRAP, {}, 'herald-test', { consumer: { sessionTimeout: 6000, heartbeatInterval: 6000 } }))
      .to.throw(ConfigError, /^kafka\.consumer\.heartbeatInterval: \(6000 ms\) must be lower than sessionTimeout \(6000 ms\)/)
  })
})

describe('Kafka dead letters near the size limit', function () {
  this.timeout(90_000)
  after(async () => { await cleanUpRun('kafka', []) })

  it('a message just under the topic limit whose handler fails ends as a dead letter, and its partition moves on', async function () {
    const topic = randomName('kafka-big')
    const group = randomName('g')
    const messaging = createMessaging({ broker: 'kafka', bootstrapServers: BOOTSTRAP, logger: false, kafka: { numPartitions: 1 } })
    const raw = new Kafka({ brokers: BOOTSTRAP.split(','), clientId: 'herald-test-raw', logLevel: logLevel.NOTHING })
    const producer = raw.producer()
    const admin = raw.admin()
    const handled: number[] = []
    const letters: Array<{ bytes: number, headers: Record<string, string> }> = []
    const runners: Runner[] = []
    try {
      await Promise.all([producer.connect(), admin.connect()])
      runners.push(await startConsumers({
        messaging,
        signals: false,
        maxMessageBytes: 2_000_000,
        handlers: [messageHandler({ topic, group, maxRetries: 0 }, async (data: unknown) => {
          const n = (data as { n: number }).n
          if (n === 0) throw new NonRetriableError('refused')
          handled.push(n)
        })]
      }))
      runners.push(await startConsumers({
        messaging,
        signals: false,
        maxMessageBytes: 2_000_000,
        handlers: [messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq') }, async (_data: unknown, ctx: Context) => {
          letters.push({ bytes: ctx.headers['herald-dlq-truncated'] === undefined ? -1 : 0, headers: ctx.headers })
        })]
      }))
      // The broker's default limit (message.max.bytes, 1 MiB + 12) less room for the record's own framing.
      const body = JSON.stringify({ n: 0, pad: 'x'.repeat(1_048_588 - 250) })
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: body, headers: { 'x-trace': 'abc' } }] })
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: JSON.stringify({ n: 1 }) }] })
      await eventually(() => handled.includes(1) && letters.length === 1, 'the next message handled and the dead letter stored', 60_000)
      expect(letters[0]!.headers[DLQ_HEADERS.reason]).to.match(/refused/)
    } finally {
      for (const r of runners.reverse()) await r.stop()
      await messaging.close()
      await admin.deleteTopics({ topics: [topic, `${topic}.${group}.dlq`] }).catch(() => {})
      await Promise.all([producer.disconnect(), admin.disconnect()])
    }
  })
})
