import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { Kafka, logLevel } from 'kafkajs'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { HeraldError, PublishError } from '../lib/errors.js'
import { createMessaging, type Messaging, type MessagingOptions } from '../lib/messaging.js'
import { brokerOptions, brokerSelected, randomName, selectedBrokers } from './helpers.js'

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

  afterEach(async function () {
    for (const m of instances.splice(0)) await m.close().catch(() => {})
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
