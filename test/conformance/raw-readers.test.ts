// Raw readers (issue 11): a handler with `raw: true` gets the body as a Buffer, undecoded, so a
// dead-letter reader sees letters that are not JSON or not UTF-8; and a dead letter that is
// dead-lettered again keeps its first failure in the `herald-dlq-original-*` headers.
import { expect } from 'chai'
import {
  consumer, createMessaging, DLQ_HEADERS, DLQ_ORIGINAL_HEADERS, messageHandler, onEvent, startConsumers,
  type Context, type Event, type Messaging, type Runner
} from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from '../helpers.js'

interface Letter {
  body: Buffer
  ctx: Context
}

const NOT_UTF8 = Buffer.from([0xff, 0xfe, 0x00])
const NOT_JSON = Buffer.from('{not json')
const NOT_UTF8_REASON = 'InvalidMessageError: the message body is not valid UTF-8 (byte 0xff at offset 0 of 3); Herald expects a UTF-8 JSON body'
const NOT_JSON_REASON = /^InvalidMessageError: the message body is not JSON \(.+; it starts with "\{not json"\); Herald expects a JSON body/

for (const kind of selectedBrokers()) {
  describe(`raw readers: ${kind}`, function () {
    this.timeout(60_000)
    /** One messaging instance per test; its runners are stopped before it is closed. */
    let m: Messaging
    const runners: Runner[] = []
    /** RabbitMQ queues the tests made, for the clean-up. */
    const queues: string[] = []

    async function start (handlers: unknown[]): Promise<void> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false })
      runners.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
    }

    /** A raw handler on `topic` that keeps what it gets; started before anything reaches `topic` (RabbitMQ queues have no history). */
    async function rawReader (topic: string, group: string): Promise<Letter[]> {
      const got: Letter[] = []
      await start([messageHandler({ topic, group, raw: true }, async (body, ctx) => { got.push({ body, ctx }) })])
      return got
    }

    beforeEach(function () { m = createMessaging(brokerOptions(kind as BrokerKind)) })

    afterEach(async function () {
      for (const runner of runners.splice(0).reverse()) await runner.stop()
      await m.close()
    })

    after(async function () {
      await cleanUpRun(kind as BrokerKind, queues)
    })

    it('a raw reader of the dead-letter destination gets a not-UTF-8 and a not-JSON letter byte for byte, with the decode reason', async function () {
      const topic = randomName()
      const group = randomName('g')
      const dlq = `${topic}.${group}.dlq`
      const letters = await rawReader(dlq, randomName('dlq-reader'))
      const handled: unknown[] = []
      await start([messageHandler({ topic, group }, async (message) => { handled.push(message) })])
      const broker = await m.broker()
      for (const [i, value] of [NOT_UTF8, NOT_JSON].entries()) {
        expect(await broker.publish([{ topic, value, key: 'k', headers: { 'x-case': String(i) } }])).to.deep.equal([undefined])
      }
      await m.producer.send(topic, { after: true }, { key: 'k' })
      await eventually(() => letters.length === 2 && handled.length === 1, 'two dead letters read raw and the next message handled')
      expect(handled).to.deep.equal([{ after: true }])
      const byCase = new Map(letters.map(l => [l.ctx.headers['x-case'], l]))
      const notUtf8 = byCase.get('0')!
      const notJson = byCase.get('1')!
      expect(Buffer.isBuffer(notUtf8.body)).to.equal(true)
      expect(notUtf8.body.equals(NOT_UTF8), 'the not-UTF-8 body, byte for byte').to.equal(true)
      expect(notJson.body.equals(NOT_JSON), 'the not-JSON body, byte for byte').to.equal(true)
      expect(notUtf8.ctx.headers[DLQ_HEADERS.reason]).to.equal(NOT_UTF8_REASON)
      expect(notJson.ctx.headers[DLQ_HEADERS.reason]).to.match(NOT_JSON_REASON)
      for (const { ctx } of letters) {
        expect(ctx.headers[DLQ_HEADERS.topic]).to.equal(topic)
        expect(ctx.headers[DLQ_HEADERS.group]).to.equal(group)
        expect(ctx.key).to.equal('k')
        expect(ctx.topic).to.equal(dlq)
        expect(ctx.attempt).to.equal(1)
        expect(ctx.event).to.equal(undefined)
        expect(ctx.headers).to.not.have.property(DLQ_ORIGINAL_HEADERS.reason)
      }
    })

    it('a raw reader that fails a dead letter sends it on, unchanged, with its own reason and the first failure in herald-dlq-original-*', async function () {
      const topic = randomName()
      const group = randomName('g')
      const dlq = `${topic}.${group}.dlq`
      const readerGroup = randomName('dlq-reader')
      const next = await rawReader(`${dlq}.${readerGroup}.dlq`, randomName('dlq2-reader'))
      const tried: Buffer[] = []
      await start([messageHandler({ topic: dlq, group: readerGroup, raw: true, maxRetries: 1, retryDelay: 10 }, async (body) => {
        tried.push(Buffer.from(body))
        body.fill(0x20) // what a handler does to its bytes stays its own: the retry and the dead letter get them as they came
        throw new Error('the repair service is down')
      })])
      await start([messageHandler({ topic, group }, async () => {})])
      const broker = await m.broker()
      expect(await broker.publish([{ topic, value: Buffer.from(NOT_UTF8), key: 'k', headers: { 'x-mine': 'kept' } }])).to.deep.equal([undefined])
      await eventually(() => next.length === 1, 'the dead letter of the dead letter')
      expect(tried.map(b => b.equals(NOT_UTF8)), 'the failing raw reader got the bytes on both attempts').to.deep.equal([true, true])
      const { body, ctx } = next[0]!
      expect(body.equals(NOT_UTF8), 'the body, byte for byte').to.equal(true)
      expect(ctx.key).to.equal('k')
      expect(ctx.headers['x-mine']).to.equal('kept')
      // The latest failure: the raw reader's.
      expect(ctx.headers[DLQ_HEADERS.reason]).to.equal('Error: the repair service is down')
      expect(ctx.headers[DLQ_HEADERS.topic]).to.equal(dlq)
      expect(ctx.headers[DLQ_HEADERS.group]).to.equal(readerGroup)
      expect(ctx.headers[DLQ_HEADERS.attempts]).to.equal('2')
      // The first failure: the decode, where the message came from.
      expect(ctx.headers[DLQ_ORIGINAL_HEADERS.reason]).to.equal(NOT_UTF8_REASON)
      expect(ctx.headers[DLQ_ORIGINAL_HEADERS.topic]).to.equal(topic)
      expect(ctx.headers[DLQ_ORIGINAL_HEADERS.group]).to.equal(group)
      expect(ctx.headers[DLQ_ORIGINAL_HEADERS.attempts]).to.equal('0')
      const firstAt = Date.parse(ctx.headers[DLQ_ORIGINAL_HEADERS.failedAt]!)
      expect(firstAt).to.be.at.most(Date.parse(ctx.headers[DLQ_HEADERS.failedAt]!))
    })

    it('a raw @onEvent method is routed by the event-name header and gets the body undecoded; the other methods get the decoded event', async function () {
      const topic = randomName()
      const group = randomName('g')
      const blobs: Array<{ body: Buffer, event: Event | undefined }> = []
      const users: Array<Event<{ id: number }>> = []
      @consumer(group, { topics: [topic] })
      class Uploads {
        @onEvent('blob.uploaded', { raw: true, maxRetries: 0 }) async blob (body: Buffer, ctx: Context): Promise<void> { blobs.push({ body, event: ctx.event }) }

        @onEvent('user.created') async user (event: Event<{ id: number }>): Promise<void> { users.push(event) }
      }
      await start([Uploads])
      const broker = await m.broker()
      expect(await broker.publish([{ topic, value: NOT_UTF8, key: 'k', headers: { 'event-name': 'blob.uploaded' } }])).to.deep.equal([undefined])
      const sent = await m.publishEvent('user.created', { id: 1 }, { topic, key: 'k' })
      await eventually(() => blobs.length === 1 && users.length === 1, 'the raw body and the decoded event')
      expect(blobs[0]!.body.equals(NOT_UTF8), 'the raw body, byte for byte').to.equal(true)
      expect(blobs[0]!.event).to.equal(undefined)
      expect(users[0]).to.deep.equal(sent)
    })
  })
}
