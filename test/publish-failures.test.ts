import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import amqplib from 'amqplib'
import { Kafka, logLevel } from 'kafkajs'
import type { BrokerKind, Subscription } from '../lib/brokers/broker.js'
import { HeraldError, PublishError } from '../lib/errors.js'
import { createMessaging, type Messaging, type MessagingOptions } from '../lib/messaging.js'
import { brokerOptions, brokerSelected, eventually, randomName, selectedBrokers } from './helpers.js'

/**
 * A publish that can never succeed fails at once, with an error that says why, without
 * waiting out `publishTimeout` (20 s here: every "fast" below is a behaviour, the answer
 * came from the broker or the producer, not a timer) and without filling the outbox.
 */
const PUBLISH_TIMEOUT = 20_000
/** Well under PUBLISH_TIMEOUT: the failure did not wait for it. */
const AT_ONCE = 10_000

interface Failure { error: PublishError, ms: number }

async function failure (send: Promise<unknown>): Promise<Failure> {
  const started = Date.now()
  try {
    await send
  } catch (err) {
    expect(err).to.be.instanceOf(PublishError)
    return { error: err as PublishError, ms: Date.now() - started }
  }
  throw new Error('the send resolved; it should have failed')
}

const codeOf = (err: PublishError): string | undefined => (err.cause as HeraldError | undefined)?.code
/**
 * Whether the failure may pass, from the broker's error itself: under mocha the adapters
 * (imported lazily as ES modules) see another copy of errors.ts than this CommonJS-loaded
 * test, so `PublishError`'s own `retriable`, which uses `instanceof`, is not reliable here.
 */
const retriableOf = (err: PublishError): unknown => (err.cause as HeraldError | undefined)?.retriable

describe('publishes that can never succeed', function () {
  this.timeout(30_000)
  const root = mkdtempSync(join(tmpdir(), 'herald-publish-failures-'))
  const instances: Messaging[] = []

  function messaging (options: MessagingOptions, outbox = false): Messaging {
    const m = createMessaging({ publishTimeout: PUBLISH_TIMEOUT, ...options, logger: false, ...(outbox ? { outbox: { dir: join(root, randomName('spool')) } } : {}) })
    instances.push(m)
    return m
  }

  const subscriptions: Subscription[] = []

  afterEach(async function () {
    for (const s of subscriptions.splice(0)) await s.close().catch(() => {})
    for (const m of instances.splice(0)) await m.close().catch(() => {})
  })

  interface Received { body: { n: unknown }, headers: Record<string, string> }

  /** What a new group of `topic` receives, through the adapter `m` uses (subscribed before anything is sent: RabbitMQ queues only what comes after). */
  async function receive (m: Messaging, topic: string): Promise<Received[]> {
    const got: Received[] = []
    const broker = await m.broker()
    subscriptions.push(await broker.subscribe({ group: randomName('g'), topics: [topic], maxInFlight: 100, deadLetterTopics: [] }, async delivery => {
      got.push({ body: JSON.parse(delivery.value.toString()), headers: delivery.headers })
      await delivery.ack()
    }))
    return got
  }

  /** Sends a sentinel behind everything sent so far and waits for it: then `got` holds all that will arrive. */
  async function untilSentinel (m: Messaging, topic: string, got: Received[]): Promise<unknown[]> {
    await m.producer.send(topic, { n: 'sentinel' })
    await eventually(() => got.some(r => r.body.n === 'sentinel'), 'the sentinel to arrive')
    return got.map(r => r.body.n).filter(n => n !== 'sentinel')
  }

  describe('header values', function () {
    for (const kind of selectedBrokers() as BrokerKind[]) {
      it(`on ${kind}: drops undefined and null header values, sends numbers and booleans as text, and fails alone the one send whose header is an object`, async function () {
        const m = messaging(brokerOptions(kind))
        const topic = randomName('headers')
        const got = await receive(m, topic)
        // 50 sends in one tick: one coalesced batch. From plain JS nothing stops these values.
        const sends = Array.from({ length: 50 }, async (_, n) => await m.producer.send(topic, { n },
          n === 7 ? { headers: { 'x-gone': undefined, 'x-null': null, 'x-count': 5, 'x-flag': true } as never } : {}))
        const bad = failure(m.producer.send(topic, { n: 'bad' }, { headers: { 'x-object': { a: 1 } } as never }))
        const results = await Promise.allSettled(sends)
        expect(results.flatMap(r => r.status === 'rejected' ? [String(r.reason)] : [])).to.deep.equal([])
        const { error } = await bad
        expect(codeOf(error)).to.equal('HERALD_INVALID_HEADER')
        expect(retriableOf(error)).to.equal(false)
        expect(error.message).to.match(/header "x-object" is an object/)
        const received = await untilSentinel(m, topic, got)
        expect([...received].sort((a, b) => Number(a) - Number(b))).to.deep.equal(Array.from({ length: 50 }, (_, n) => n))
        const seven = got.find(r => r.body.n === 7)!
        expect(seven.headers).not.to.have.any.keys('x-gone', 'x-null')
        expect(seven.headers).to.include({ 'x-count': '5', 'x-flag': 'true' })
      })
    }
  })

  describe('topic names the broker refuses', function () {
    const refused: Array<{ kind: BrokerKind, topic: string, reason: RegExp, down: MessagingOptions }> = [
      { kind: 'kafka', topic: 'no spaces allowed!', reason: /letters, digits/, down: { bootstrapServers: '127.0.0.1:1' } },
      { kind: 'kafka', topic: 'k'.repeat(250), reason: /at most 249 characters/, down: { bootstrapServers: '127.0.0.1:1' } },
      { kind: 'rabbitmq', topic: 'r'.repeat(300), reason: /over the 255 bytes/, down: { url: 'amqp://guest:guest@127.0.0.1:1' } }
    ]
    for (const { kind, topic, reason, down } of refused) {
      ;(brokerSelected(kind) ? it : it.skip)(`on ${kind}: fails a send to a topic of ${topic.length} characters at once, without spooling it, also while the outbox holds messages`, async function () {
        const m = messaging({ ...brokerOptions(kind), ...down, publishTimeout: 1_000 }, true)
        // The broker is down: the first send goes to the outbox, and so would every send behind it.
        await m.producer.send(randomName('held'), { n: 0 })
        expect(m.outbox?.pending).to.equal(1)
        const { error, ms } = await failure(m.producer.send(topic, { n: 1 }))
        expect(ms).to.be.below(AT_ONCE)
        expect(codeOf(error)).to.equal('HERALD_INVALID_TOPIC')
        expect(retriableOf(error)).to.equal(false)
        expect(error.message).to.match(reason)
        expect(m.outbox?.pending).to.equal(1)
      })
    }

    ;(brokerSelected('rabbitmq') ? it : it.skip)('on RabbitMQ with an outbox: a send to a topic over 255 bytes rejects at once, is not spooled, and its batch-mates are delivered exactly once', async function () {
      const m = messaging(brokerOptions('rabbitmq'), true)
      const topic = randomName('mates')
      const got = await receive(m, topic)
      const sends = [0, 1, 2, 3, 4].map(async n => n === 2 ? await failure(m.producer.send('t'.repeat(300), { n })) : await m.producer.send(topic, { n }))
      const results = await Promise.allSettled(sends)
      expect(results.map(r => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
      const { error, ms } = (results[2] as PromiseFulfilledResult<Failure>).value
      expect(ms).to.be.below(AT_ONCE)
      expect(codeOf(error)).to.equal('HERALD_INVALID_TOPIC')
      expect(m.outbox?.pending).to.equal(0)
      expect(await untilSentinel(m, topic, got)).to.deep.equal([0, 1, 3, 4])
      expect(m.outbox).to.include({ pending: 0, undeliverable: 0 })
    })
  })

  after(function () {
    rmSync(root, { recursive: true, force: true })
  })

  describe('maxMessageBytes', function () {
    for (const kind of selectedBrokers() as BrokerKind[]) {
      it(`fails an oversized message at once on ${kind}, naming the option, with or without an outbox`, async function () {
        for (const outbox of [false, true]) {
          const m = messaging({ ...brokerOptions(kind), maxMessageBytes: 2048 }, outbox)
          const { error, ms } = await failure(m.producer.send(randomName('big'), { blob: 'x'.repeat(4096) }))
          expect(ms).to.be.below(AT_ONCE)
          expect(codeOf(error)).to.equal('HERALD_MESSAGE_TOO_LARGE')
          expect(retriableOf(error)).to.equal(false)
          expect(error.message).to.match(/is \d+ bytes \(body, key and headers\), over maxMessageBytes \(2048\)/)
          if (outbox) expect(m.outbox?.pending).to.equal(0)
        }
      })
    }

    it('is 1 MiB unless given', async function () {
      const m = messaging({ broker: 'memory' })
      await m.producer.send(randomName('ok'), { blob: 'x'.repeat(1000 * 1024) })
      const { error } = await failure(m.publishEvent('too.big', { blob: 'x'.repeat(1024 * 1024) }))
      expect(error.message).to.match(/event "too.big".*over maxMessageBytes \(1048576\)/)
    })
  })

  ;(brokerSelected('kafka') ? describe : describe.skip)('on Kafka', function () {
    const admin = new Kafka({ brokers: [String(brokerOptions('kafka').bootstrapServers)], logLevel: logLevel.NOTHING }).admin()
    const topics: string[] = []

    before(async function () {
      await admin.connect()
    })

    after(async function () {
      if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {})
      await admin.disconnect()
    })

    /** A topic whose max.message.bytes is 1 KiB. */
    async function smallTopic (): Promise<string> {
      const topic = randomName('herald-small')
      topics.push(topic)
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '1024' }] }], waitForLeaders: true })
      return topic
    }

    it('fails a message over the topic\'s max.message.bytes at once, saying so, and does not spool it', async function () {
      const topic = await smallTopic()
      const m = messaging(brokerOptions('kafka'), true)
      const { error, ms } = await failure(m.publishEvent('report.ready', { blob: 'x'.repeat(4096) }, { topic }))
      expect(ms).to.be.below(AT_ONCE)
      expect(codeOf(error)).to.equal('HERALD_MESSAGE_TOO_LARGE')
      expect(retriableOf(error)).to.equal(false)
      expect(error.message).to.match(/larger than the max message size.*max\.message\.bytes/)
      expect(m.outbox?.pending).to.equal(0)
    })

    it('fails only the oversized message of a batch, not the sends coalesced with it', async function () {
      const topic = await smallTopic()
      const m = messaging(brokerOptions('kafka'))
      const results = await Promise.allSettled([
        m.producer.send(topic, { n: 1 }),
        m.producer.send(topic, { blob: 'x'.repeat(4096) }),
        m.producer.send(topic, { n: 3 })
      ])
      expect(results.map(r => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled'])
    })

    it('fails a send to a topic name Kafka refuses at once, and only that one', async function () {
      const m = messaging(brokerOptions('kafka'), true)
      const good = randomName('herald-good')
      topics.push(good)
      const [bad, ok] = await Promise.allSettled([
        failure(m.producer.send('no spaces allowed!', { n: 1 })),
        m.producer.send(good, { n: 2 })
      ])
      expect(ok.status).to.equal('fulfilled')
      const { error, ms } = (bad as PromiseFulfilledResult<Failure>).value
      expect(ms).to.be.below(AT_ONCE)
      expect(codeOf(error)).to.equal('HERALD_INVALID_TOPIC')
      expect(error.message).to.match(/invalid topic.*letters, digits/)
      expect(m.outbox?.pending).to.equal(0)
    })
  })

  ;(brokerSelected('rabbitmq') ? it : it.skip)('on RabbitMQ, a channel error caused by one message of a batch does not fail the others: each is sent again on a new channel', async function () {
    const exchange = randomName('herald-x')
    const m = messaging({ ...brokerOptions('rabbitmq'), rabbitmq: { exchange } })
    const broker = await m.broker()
    // Opens the publishing channel (the message itself is unroutable, no matter).
    await broker.publish([{ topic: randomName('warm-up'), value: Buffer.from('{}'), headers: {} }])
    // The publishing channel still believes in the exchange: the first message sent on it
    // makes RabbitMQ close the channel (404 NOT_FOUND), and with it every unconfirmed message.
    const raw = await amqplib.connect(String(brokerOptions('rabbitmq').url))
    try {
      const channel = await raw.createChannel()
      await channel.deleteExchange(exchange)
      const batch = [0, 1, 2].map(n => ({ topic: randomName('gone'), value: Buffer.from(JSON.stringify({ n })), headers: {} }))
      const results = await broker.publish(batch)
      // Sent again on a new channel, which declares the exchange again: each one now gets its own answer (no queue is bound).
      expect(results.map(r => (r as HeraldError | undefined)?.code)).to.deep.equal(['HERALD_UNROUTABLE', 'HERALD_UNROUTABLE', 'HERALD_UNROUTABLE'])
      await channel.deleteExchange(exchange)
    } finally {
      await raw.close()
    }
  })

  ;(brokerSelected('rabbitmq') ? it : it.skip)('fails at once on RabbitMQ when the password is refused, without the password in the message', async function () {
    const password = 'not-the-password-4711'
    const url = String(brokerOptions('rabbitmq').url).replace(/:[^:@/]*@/, `:${password}@`)
    const m = messaging({ ...brokerOptions('rabbitmq'), url }, true)
    const { error, ms } = await failure(m.publishEvent('user.created', { id: 1 }, { topic: randomName('users') }))
    expect(ms).to.be.below(AT_ONCE)
    expect(retriableOf(error)).to.equal(false)
    expect(error.message).to.match(/ACCESS_REFUSED.*check the user name and password/)
    expect(error.message).not.to.include(password)
    expect(m.outbox?.pending).to.equal(0)
    // With an outbox, start-up still fails on a refused credential (it would not pass by itself).
    const connectError = await m.connect().then(() => undefined, (e: unknown) => e)
    expect((connectError as Error).message).to.match(/ACCESS_REFUSED/)
  })

  ;(brokerSelected('redis') ? it : it.skip)('fails at once on Redis when the credentials are refused (WRONGPASS), without the password in the message', async function () {
    const password = 'secret-pw-4711'
    const m = messaging({ ...brokerOptions('redis'), url: `redis://herald-nobody:${password}@127.0.0.1:6379` }, true)
    const { error, ms } = await failure(m.publishEvent('user.created', { id: 1 }, { topic: randomName('users') }))
    expect(ms).to.be.below(AT_ONCE)
    expect(retriableOf(error)).to.equal(false)
    expect(error.message).to.match(/WRONGPASS.*check the user name and password/)
    expect(error.message).not.to.include(password)
    expect(m.outbox?.pending).to.equal(0)
  })
})
