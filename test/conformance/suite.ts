import { expect } from 'chai'
import { Type } from '@sinclair/typebox'
import { Partitioners } from 'kafkajs'
import {
  consumer, createMessaging, HeraldError, messageHandler, NonRetriableError, onEvent, PublishError, startConsumers,
  type Context, type Event, type Messaging, type MessagingOptions, type Runner, DLQ_HEADERS
} from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { eventually, randomName, sleep } from '../helpers.js'
import { RecordingLogger } from '../support/recording-logger.js'
import { batchCases } from './batch-cases.js'

/** How a broker differs, where it truly does. */
export interface BrokerFeatures {
  /** A group created after messages were published still gets them (Kafka, Redis, memory; not RabbitMQ queues). */
  newGroupReadsHistory: boolean
}

export interface ConformanceTarget {
  kind: BrokerKind
  options: MessagingOptions
  features: BrokerFeatures
}

interface Received {
  message: unknown
  ctx: Context
  at: number
}

interface RawMessage {
  value: Buffer
  key: string | undefined
  headers: Record<string, string>
}

/**
 * The behaviour every broker must have, as users see it through Herald's API:
 * producing, handlers, retries, dead letters, groups, order and shutdown.
 */
export function conformance (target: ConformanceTarget): void {
  describe(`conformance: ${target.kind}`, function () {
    this.timeout(60_000)
    const open: Array<{ close(): Promise<void> } | Runner> = []
    /** RabbitMQ queues the tests made (a group's queue and its dead-letter queue), for the clean-up. */
    const queues: string[] = []

    function messaging (extra: MessagingOptions = {}): Messaging {
      const m = createMessaging({ ...target.options, ...extra })
      open.push(m)
      return m
    }

    async function start (m: Messaging, handlers: unknown[], extra: { context?: () => object, shutdownTimeout?: number, maxMessageBytes?: number } = {}): Promise<Runner> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false, ...extra })
      open.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
      return runner
    }

    /** Starts a reader of a dead-letter topic and returns what it receives. */
    async function deadLetters (m: Messaging, topic: string, group: string): Promise<Received[]> {
      const got: Received[] = []
      await start(m, [messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq-reader') }, async (message, ctx) => { got.push({ message, ctx, at: Date.now() }) })])
      return got
    }

    /**
     * Reads a dead-letter topic below Herald's decoding (what it holds may be malformed or
     * large), from now on: start it before the messages are published.
     */
    async function rawDeadLetters (m: Messaging, topic: string, group: string): Promise<RawMessage[]> {
      const got: RawMessage[] = []
      const dlq = `${topic}.${group}.dlq`
      const readerGroup = randomName('dlq-raw')
      const sub = await (await m.broker()).subscribe({ group: readerGroup, topics: [dlq], maxInFlight: 10, deadLetterTopics: [] }, async (d) => {
        got.push({ value: d.value, key: d.key, headers: d.headers })
        await d.ack()
      })
      open.push({ close: () => sub.close() })
      queues.push(`${dlq}.${readerGroup}`)
      return got
    }

    afterEach(async function () {
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
    })

    after(async function () {
      await cleanUpRun(target.kind, queues)
    })

    it('a handler receives the event data and a ctx with topic, key, headers, attempt, event and the context() fields', async function () {
      const m = messaging({ source: 'orders-service' })
      const topic = randomName()
      const got: Received[] = []
      const db = { name: 'the-db' }
      await start(m, [messageHandler({ topic, group: randomName('g') }, async (message, ctx: Context<{ db: typeof db }>) => { got.push({ message, ctx, at: Date.now() }) })], { context: () => ({ db }) })
      const sent = await m.publishEvent('order.created', { id: 7, total: 12.5 }, { topic, key: '7', headers: { 'x-trace': 'abc' } })
      await eventually(() => got.length === 1, 'the handler to run')
      const { message, ctx } = got[0]!
      expect(message).to.deep.equal({ id: 7, total: 12.5 })
      expect(ctx.topic).to.equal(topic)
      expect(ctx.key).to.equal('7')
      expect(ctx.attempt).to.equal(1)
      expect(ctx.headers['x-trace']).to.equal('abc')
      expect(ctx.headers['event-name']).to.equal('order.created')
      expect(ctx.headers['event-id']).to.equal(sent.id)
      expect(ctx.event).to.deep.equal(sent)
      expect(ctx.event!.source).to.equal('orders-service')
      expect((ctx as unknown as { db: unknown }).db).to.equal(db)
      expect(ctx.signal.aborted).to.equal(false)
    })

    it('a plain JSON message sent with producer.send reaches the handler unwrapped, with no event', async function () {
      const m = messaging()
      const topic = randomName()
      const got: Received[] = []
      await start(m, [messageHandler({ topic, group: randomName('g') }, async (message, ctx) => { got.push({ message, ctx, at: Date.now() }) })])
      await m.producer.send(topic, { plain: true, n: [1, 2] }, { key: 'k' })
      await eventually(() => got.length === 1, 'the handler to run')
      expect(got[0]!.message).to.deep.equal({ plain: true, n: [1, 2] })
      expect(got[0]!.ctx.event).to.equal(undefined)
      expect(got[0]!.ctx.key).to.equal('k')
    })

    it('a message that does not match the schema is dead-lettered with the validation errors and never reaches the handler', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      const got: unknown[] = []
      const schema = Type.Object({ id: Type.Number(), email: Type.String() })
      await start(m, [messageHandler({ topic, group, schema }, async (order) => { got.push(order.id) })])
      await m.publishEvent('user.created', { id: 'not-a-number', email: 'a@b.c' }, { topic })
      await m.publishEvent('user.created', { id: 2, email: 'a@b.c' }, { topic })
      await eventually(() => dead.length === 1 && got.length === 1, 'one dead letter and one handled message')
      expect(got).to.deep.equal([2])
      const reason = dead[0]!.ctx.headers[DLQ_HEADERS.reason]!
      expect(reason).to.contain('schema validation failed')
      expect(reason).to.contain('/id')
      expect((dead[0]!.message as { id: unknown }).id).to.equal('not-a-number')
    })

    it('a failing handler is retried with the configured backoff and succeeds on the third attempt', async function () {
      const m = messaging()
      const topic = randomName()
      const attempts: Array<{ attempt: number, at: number }> = []
      let sentinel = false
      await start(m, [messageHandler({ topic, group: randomName('g'), maxRetries: 3, retryDelay: 100, backoff: 'exponential' }, async (message: { n: number }, ctx) => {
        if (message.n === 0) { sentinel = true; return }
        attempts.push({ attempt: ctx.attempt, at: Date.now() })
        if (ctx.attempt < 3) throw new Error('database unavailable')
      })])
      await m.publishEvent('job', { n: 1 }, { topic, key: 'k' })
      await eventually(() => attempts.length === 3, 'three attempts')
      // A sentinel after it, same key: once it is handled, no attempt of the first is still to come.
      await m.publishEvent('job', { n: 0 }, { topic, key: 'k' })
      await eventually(() => sentinel, 'the sentinel')
      expect(attempts.map(a => a.attempt)).to.deep.equal([1, 2, 3])
      // exponential: 100 ms before the first retry, 200 ms before the second (timers may fire ~1 ms early)
      expect(attempts[1]!.at - attempts[0]!.at).to.be.at.least(95)
      expect(attempts[2]!.at - attempts[1]!.at).to.be.at.least(195)
    })

    it('a handler that always throws is dead-lettered, unchanged, with its reason, topic, group, attempts and time', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      let calls = 0
      await start(m, [messageHandler({ topic, group, maxRetries: 2, retryDelay: 20, backoff: 'fixed' }, async () => {
        calls++
        throw new Error('payment provider rejected the card')
      })])
      const sent = await m.publishEvent('payment.requested', { amount: 10 }, { topic, key: 'order-1' })
      await eventually(() => dead.length === 1, 'the dead letter')
      expect(calls).to.equal(3)
      const { message, ctx } = dead[0]!
      expect(message).to.deep.equal({ amount: 10 })
      expect(ctx.event!.id).to.equal(sent.id)
      expect(ctx.key).to.equal('order-1')
      expect(ctx.headers[DLQ_HEADERS.reason]).to.equal('Error: payment provider rejected the card')
      expect(ctx.headers[DLQ_HEADERS.topic]).to.equal(topic)
      expect(ctx.headers[DLQ_HEADERS.group]).to.equal(group)
      expect(ctx.headers[DLQ_HEADERS.attempts]).to.equal('3')
      expect(Date.parse(ctx.headers[DLQ_HEADERS.failedAt]!)).to.be.closeTo(Date.now(), 60_000)
      expect(ctx.headers['event-name']).to.equal('payment.requested')
    })

    it('a NonRetriableError is dead-lettered after one attempt', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      let calls = 0
      let sentinel = false
      await start(m, [messageHandler({ topic, group, maxRetries: 5, retryDelay: 20 }, async (message: { id: number }) => {
        if (message.id === 0) { sentinel = true; return }
        calls++
        throw new NonRetriableError('customer is blocked')
      })])
      await m.publishEvent('order.created', { id: 1 }, { topic, key: 'k' })
      await eventually(() => dead.length === 1, 'the dead letter')
      // A sentinel after it, same key: once it is handled, no other attempt of the first is to come.
      await m.publishEvent('order.created', { id: 0 }, { topic, key: 'k' })
      await eventually(() => sentinel, 'the sentinel')
      expect(calls).to.equal(1)
      expect(dead[0]!.ctx.headers[DLQ_HEADERS.attempts]).to.equal('1')
      expect(dead[0]!.ctx.headers[DLQ_HEADERS.reason]).to.contain('customer is blocked')
    })

    it('a message that is not JSON is dead-lettered and the consumer keeps handling the next ones', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const deadRaw: string[] = []
      await start(m, [messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq-reader') }, async () => {})])
      const broker = await m.broker()
      const got: unknown[] = []
      await start(m, [messageHandler({ topic, group }, async (message) => { got.push(message) })])
      await broker.publish([{ topic, value: Buffer.from('{not json'), headers: {} }])
      await m.producer.send(topic, { after: true })
      await eventually(() => got.length === 1, 'the next message to be handled')
      expect(got).to.deep.equal([{ after: true }])
      // The dead letter is stored where a reader that comes later finds it, unchanged.
      const reader = messaging()
      const readerGot: Received[] = []
      const dlqGroup = randomName('late-reader')
      // A reader of the dead-letter topic sees the original bytes as a malformed message,
      // so read it with a raw subscription instead.
      const sub = await (await reader.broker()).subscribe({ group: dlqGroup, topics: [`${topic}.${group}.dlq`], maxInFlight: 10, deadLetterTopics: [] }, async (d) => {
        deadRaw.push(d.value.toString('utf8'))
        readerGot.push({ message: d.headers, ctx: undefined as never, at: Date.now() })
        await d.ack()
      })
      open.push({ close: () => sub.close() })
      queues.push(`${topic}.${group}.dlq.${dlqGroup}`)
      if (target.features.newGroupReadsHistory) {
        await eventually(() => deadRaw.length === 1, 'the dead letter')
        expect(deadRaw[0]).to.equal('{not json')
        expect((readerGot[0]!.message as Record<string, string>)[DLQ_HEADERS.reason]).to.contain('not JSON')
      }
    })

    it('a @consumer class dispatches events by name, and events with no method are acknowledged and skipped', async function () {
      const m = messaging()
      const topicA = randomName()
      const topicB = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topicA, group)
      const seen: string[] = []
      @consumer(group, { topics: [topicA, topicB] })
      class OrderEvents {
        prefix = 'seen:'
        @onEvent('user.created') async userCreated (event: Event<{ id: number }>, ctx: Context): Promise<void> {
          seen.push(`${this.prefix}user ${event.data.id} on ${ctx.topic === topicA ? 'A' : 'B'}`)
        }

        @onEvent(['payment.captured', 'payment.refunded']) async payment (event: Event<{ amount: number }>): Promise<void> {
          seen.push(`${this.prefix}${event.name} ${event.data.amount}`)
        }
      }
      await start(m, [OrderEvents])
      await m.publishEvent('user.created', { id: 1 }, { topic: topicA, key: 'k' })
      await m.publishEvent('something.else', { id: 2 }, { topic: topicA, key: 'k' })
      await m.publishEvent('payment.refunded', { amount: 5 }, { topic: topicB, key: 'k' })
      await m.publishEvent('user.created', { id: 3 }, { topic: topicA, key: 'k' })
      // A sentinel after them on each topic, same key: once both are handled, nothing else is to come.
      await m.publishEvent('user.created', { id: 9 }, { topic: topicA, key: 'k' })
      await m.publishEvent('payment.captured', { amount: 9 }, { topic: topicB, key: 'k' })
      await eventually(() => seen.includes('seen:user 9 on A') && seen.includes('seen:payment.captured 9'), 'the sentinels')
      expect(seen).to.have.members(['seen:user 1 on A', 'seen:payment.refunded 5', 'seen:user 3 on A', 'seen:user 9 on A', 'seen:payment.captured 9'])
      expect(seen.indexOf('seen:user 1 on A')).to.be.below(seen.indexOf('seen:user 3 on A'))
      expect(dead, 'the unknown event is skipped, not dead-lettered').to.have.length(0)
    })

    it('a body that is not UTF-8, not JSON or empty is dead-lettered unchanged with a reason saying what is wrong, and the next message is handled', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await rawDeadLetters(m, topic, group)
      const got: unknown[] = []
      await start(m, [messageHandler({ topic, group }, async (message) => { got.push(message) })])
      const broker = await m.broker()
      const bad = [Buffer.from([0xff, 0xfe, 0x00]), Buffer.from('{not json'), Buffer.alloc(0)]
      for (const [i, value] of bad.entries()) {
        expect(await broker.publish([{ topic, value, key: 'k', headers: { 'x-case': String(i) } }])).to.deep.equal([undefined])
        await m.producer.send(topic, { n: i }, { key: 'k' })
      }
      await eventually(() => got.length === 3 && dead.length === 3, 'three handled messages and three dead letters')
      expect(got).to.deep.equal([{ n: 0 }, { n: 1 }, { n: 2 }])
      const byCase = new Map(dead.map(d => [d.headers['x-case'], d]))
      const reasons = bad.map((value, i) => {
        const letter = byCase.get(String(i))!
        expect(letter.value.equals(value), `dead letter ${i} keeps the body byte for byte`).to.equal(true)
        expect(letter.key).to.equal('k')
        expect(letter.headers[DLQ_HEADERS.attempts]).to.equal('0')
        expect(letter.headers[DLQ_HEADERS.topic]).to.equal(topic)
        return letter.headers[DLQ_HEADERS.reason]!
      })
      expect(reasons[0]).to.equal('InvalidMessageError: the message body is not valid UTF-8 (byte 0xff at offset 0 of 3); Herald expects a UTF-8 JSON body')
      expect(reasons[1]).to.match(/^InvalidMessageError: the message body is not JSON \(.+; it starts with "\{not json"\); Herald expects a JSON body/)
      expect(reasons[2]).to.equal('InvalidMessageError: the message body is empty (0 bytes); Herald expects a JSON body')
    })

    it('__proto__ and constructor.prototype keys in a body are removed: the handler gets the rest and no prototype is polluted', async function () {
      const logger = new RecordingLogger()
      const m = messaging({ logger })
      const topic = randomName()
      const got: Array<Record<string, unknown>> = []
      await start(m, [messageHandler({ topic, group: randomName('g') }, async (message) => {
        // What a careless handler might do with untrusted input: neither may reach a prototype.
        Object.assign({}, message)
        naiveMerge({}, message)
        got.push(message as Record<string, unknown>)
      })])
      const body = '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},' +
        '"nested":{"__proto__":{"isAdmin":true},"ok":1},"list":[{"\\u005f_proto__":{"polluted":"yes"}}],' +
        '"name":"kept","prototype":"kept too","class":{"constructor":"Order"}}'
      await (await m.broker()).publish([{ topic, value: Buffer.from(body), key: 'k', headers: {} }])
      await m.producer.send(topic, { after: true }, { key: 'k' })
      await eventually(() => got.length === 2, 'both messages handled')
      const [message] = got
      expect(message).to.deep.equal({ nested: { ok: 1 }, list: [{}], name: 'kept', prototype: 'kept too', class: { constructor: 'Order' } })
      expect(Object.hasOwn(message!, '__proto__')).to.equal(false)
      expect(Object.getPrototypeOf(message)).to.equal(Object.prototype)
      expect(Object.getPrototypeOf(message!.nested)).to.equal(Object.prototype)
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined)
      expect(({} as Record<string, unknown>).isAdmin).to.equal(undefined)
      expect(got[1]).to.deep.equal({ after: true })
      expect(logger.records.some(r => r.level === 'warn' && (r.fields.removedKeys as string[] | undefined)?.length === 4)).to.equal(true)
    })

    it('a message over maxMessageBytes is dead-lettered unchanged and unparsed, with a reason giving its size and the option', async function () {
      // Kafka's brokers refuse messages over about 1 MB (message.max.bytes), so there the
      // limit is lowered; elsewhere a 2 MiB message meets the default limit of 1 MiB.
      const [size, limit] = target.kind === 'kafka' ? [5_000, 1_000] : [2 * 1024 * 1024, undefined]
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await rawDeadLetters(m, topic, group)
      const got: unknown[] = []
      await start(m, [messageHandler({ topic, group }, async (message) => { got.push(message) })], { maxMessageBytes: limit })
      const big = Buffer.from(JSON.stringify({ blob: 'x'.repeat(size - 11) }))
      expect(big.length).to.equal(size)
      expect(await (await m.broker()).publish([{ topic, value: big, key: 'k', headers: { 'content-type': 'application/json' } }])).to.deep.equal([undefined])
      await m.producer.send(topic, { small: true }, { key: 'k' })
      await eventually(() => got.length === 1 && dead.length === 1, 'the small message handled and the big one dead-lettered', 30_000)
      expect(got).to.deep.equal([{ small: true }])
      expect(dead[0]!.value.equals(big), 'the dead letter keeps the body').to.equal(true)
      expect(dead[0]!.headers['content-type']).to.equal('application/json')
      expect(dead[0]!.headers[DLQ_HEADERS.reason]).to.equal(
        `InvalidMessageError: the message body is ${size} bytes, over maxMessageBytes (${limit ?? 1_048_576} bytes), so it was not parsed; ` +
        'to handle bigger messages, raise maxMessageBytes on the handler or in startConsumers()')
    })

    it('a handler that throws a non-Error value (a string, an object, undefined, null) is retried, then dead-lettered with a reason saying what it threw', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      const calls = new Map<string, number>()
      const thrown: Record<string, unknown> = { string: 'card declined', object: { code: 42, detail: 'limit' }, undefined, null: null }
      const handled: string[] = []
      await start(m, [messageHandler({ topic, group, maxRetries: 1, retryDelay: 10 }, async (message: unknown) => {
        const kind = (message as { kind: string }).kind
        calls.set(kind, (calls.get(kind) ?? 0) + 1)
        if (kind in thrown) throw thrown[kind]
        handled.push(kind)
      })])
      for (const kind of [...Object.keys(thrown), 'good']) await m.producer.send(topic, { kind }, { key: kind })
      await eventually(() => dead.length === 4 && handled.length === 1, 'four dead letters and the good message')
      const reasons = Object.fromEntries(dead.map(d => [(d.message as { kind: string }).kind, d.ctx.headers[DLQ_HEADERS.reason]]))
      const advice = 'not an Error; throw an Error (or a NonRetriableError) so the reason has a name, a message and a stack'
      expect(reasons).to.deep.equal({
        string: `the handler threw a string: "card declined", ${advice}`,
        object: `the handler threw an object: { code: 42, detail: 'limit' }, ${advice}`,
        undefined: `the handler threw undefined, ${advice}`,
        null: `the handler threw null, ${advice}`
      })
      for (const d of dead) expect(d.ctx.headers[DLQ_HEADERS.attempts]).to.equal('2')
      expect(Object.fromEntries(calls)).to.deep.equal({ string: 2, object: 2, undefined: 2, null: 2, good: 1 })
    })

    it('a dead-letter reason never carries a URL password from the handler\'s error', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      await start(m, [messageHandler({ topic, group, maxRetries: 0 }, async () => {
        throw new Error('could not reach amqps://app:S3cr3t-pass@db.internal:5671/orders nor redis://:S3cr3t-pass@cache:6379')
      })])
      await m.producer.send(topic, { n: 1 })
      await eventually(() => dead.length === 1, 'the dead letter')
      const reason = dead[0]!.ctx.headers[DLQ_HEADERS.reason]!
      expect(reason).to.equal('Error: could not reach amqps://app:***@db.internal:5671/orders nor redis://:***@cache:6379')
    })

    it('two groups each get every message', async function () {
      const m = messaging()
      const topic = randomName()
      const a: number[] = []
      const b: number[] = []
      await start(m, [
        messageHandler({ topic, group: randomName('ga') }, async (msg: unknown) => { a.push((msg as { n: number }).n) }),
        messageHandler({ topic, group: randomName('gb') }, async (msg: unknown) => { b.push((msg as { n: number }).n) })
      ])
      for (let n = 0; n < 10; n++) await m.publishEvent('tick', { n }, { topic, key: String(n) })
      await eventually(() => a.length === 10 && b.length === 10, 'both groups to get all ten')
      expect([...a].sort((x, y) => x - y)).to.deep.equal([...Array(10).keys()])
      expect([...b].sort((x, y) => x - y)).to.deep.equal([...Array(10).keys()])
    })

    it('handlers of one group on different topics each get exactly their topic\'s messages', async function () {
      const m = messaging()
      const group = randomName('g')
      const [topicA, topicB] = [randomName(), randomName()]
      const a: string[] = []
      const b: string[] = []
      await start(m, [
        messageHandler({ topic: topicA, group }, async (msg: unknown) => { a.push((msg as { id: string }).id) }),
        messageHandler({ topic: topicB, group }, async (msg: unknown) => { b.push((msg as { id: string }).id) })
      ])
      for (let n = 0; n < 6; n++) {
        await m.publishEvent('x', { id: `a${n}` }, { topic: topicA, key: String(n) })
        await m.publishEvent('x', { id: `b${n}` }, { topic: topicB, key: String(n) })
      }
      await eventually(() => a.length === 6 && b.length === 6, 'six messages on each handler')
      expect([...a].sort()).to.deep.equal(['a0', 'a1', 'a2', 'a3', 'a4', 'a5'])
      expect([...b].sort()).to.deep.equal(['b0', 'b1', 'b2', 'b3', 'b4', 'b5'])
    })

    it('two consumers in one group split the work: each message is handled once, by one of them', async function () {
      const topic = randomName()
      const group = randomName('g')
      const byConsumer: number[][] = [[], []]
      for (const i of [0, 1]) {
        await start(messaging(), [messageHandler({ topic, group, concurrency: 1 }, async (msg: unknown) => {
          byConsumer[i]!.push((msg as { n: number }).n)
          await sleep(20)
        })])
      }
      const producer = messaging()
      const total = 40
      await Promise.all([...Array(total).keys()].map(n => producer.publishEvent('job', { n }, { topic, key: `key-${n}` })))
      await eventually(() => byConsumer[0]!.length + byConsumer[1]!.length >= total, 'all messages handled')
      const all = [...byConsumer[0]!, ...byConsumer[1]!].sort((x, y) => x - y)
      expect(all).to.deep.equal([...Array(total).keys()])
      expect(byConsumer[0]!.length, 'first consumer got a share').to.be.above(0)
      expect(byConsumer[1]!.length, 'second consumer got a share').to.be.above(0)
    })

    it('messages with the same key are handled in the order they were published, even with concurrency', async function () {
      const m = messaging()
      const topic = randomName()
      const seen = new Map<string, number[]>()
      await start(m, [messageHandler({ topic, group: randomName('g'), concurrency: 8 }, async (msg: unknown, ctx) => {
        await sleep(Math.random() * 10)
        const list = seen.get(ctx.key!) ?? []
        list.push((msg as { n: number }).n)
        seen.set(ctx.key!, list)
      })])
      const keys = ['alpha', 'beta', 'gamma']
      const sends: Array<Promise<unknown>> = []
      for (let n = 0; n < 30; n++) sends.push(m.publishEvent('step', { n }, { topic, key: keys[n % 3] }))
      await Promise.all(sends)
      await eventually(() => [...seen.values()].reduce((s, l) => s + l.length, 0) === 30, 'all thirty handled')
      for (const [i, key] of keys.entries()) {
        expect(seen.get(key), key).to.deep.equal([...Array(10).keys()].map(k => k * 3 + i))
      }
    })

    it('sends made while earlier batches wait for their acknowledgement reach a one-key group in send order (batches in flight keep it)', async function () {
      const m = messaging()
      const topic = randomName()
      const seen: number[] = []
      await start(m, [messageHandler({ topic, group: randomName('g') }, async (msg: unknown) => { seen.push((msg as { n: number }).n) })])
      const total = 120
      const sends: Array<Promise<void>> = []
      // A few sends per tick: each tick's sends leave as a batch while the earlier ones are unanswered.
      for (let n = 0; n < total; n++) {
        sends.push(m.producer.send(topic, { n }, { key: 'one' }))
        if (n % 6 === 5) await new Promise(resolve => setImmediate(resolve))
      }
      await Promise.all(sends)
      await eventually(() => seen.length >= total, 'all handled')
      expect(seen).to.deep.equal([...Array(total).keys()])
    })

    it('while a failed message waits for its retry, other messages keep flowing', async function () {
      const m = messaging()
      const topic = randomName()
      const handled: string[] = []
      await start(m, [messageHandler({ topic, group: randomName('g'), retryDelay: 2000, backoff: 'fixed' }, async (msg: unknown, ctx) => {
        const id = (msg as { id: string }).id
        if (id === 'slow' && ctx.attempt === 1) throw new Error('try later')
        handled.push(id)
      })])
      await m.publishEvent('job', { id: 'slow' }, { topic, key: 'slow' })
      await sleep(100)
      for (const id of ['a', 'b', 'c', 'd']) await m.publishEvent('job', { id }, { topic, key: id })
      await eventually(() => handled.length >= 4, 'the other four')
      expect(handled.slice(0, 4)).to.have.members(['a', 'b', 'c', 'd'])
      await eventually(() => handled.includes('slow'), 'the retried message', 10_000)
      expect(handled.at(-1)).to.equal('slow')
    })

    it('stop() lets the running handler finish and acknowledges its message: it is not delivered again nor dead-lettered', async function () {
      const topic = randomName()
      const group = randomName('g')
      const m = messaging()
      const dead = await deadLetters(m, topic, group)
      let started = 0
      let finished = 0
      const runner = await start(m, [messageHandler({ topic, group }, async () => {
        started++
        await sleep(500)
        finished++
      })], { shutdownTimeout: 10_000 })
      await m.publishEvent('job', { n: 1 }, { topic, key: 'k' })
      await eventually(() => started === 1, 'the handler to start')
      await runner.stop()
      expect(finished, 'stop() resolved only after the handler finished').to.equal(1)
      // A new consumer of the same group gets only a sentinel published after it, same key:
      // the message was acknowledged.
      const again: number[] = []
      await start(messaging(), [messageHandler({ topic, group }, async (message: { n: number }) => { again.push(message.n) })])
      await m.publishEvent('job', { n: 2 }, { topic, key: 'k' })
      await eventually(() => again.includes(2), 'the sentinel')
      expect(again).to.deep.equal([2])
      expect(dead).to.have.length(0)
    })

    it('a message caught waiting for a retry at shutdown is delivered again to the group, not dead-lettered', async function () {
      const topic = randomName()
      const group = randomName('g')
      const m = messaging()
      const dead = await deadLetters(m, topic, group)
      let firstAttempts = 0
      const runner = await start(m, [messageHandler({ topic, group, retryDelay: 60_000, maxRetries: 1, durableRetryAfter: false }, async () => {
        firstAttempts++
        throw new Error('not yet')
      })])
      await m.publishEvent('job', { n: 1 }, { topic })
      await eventually(() => firstAttempts === 1, 'the first attempt')
      await runner.stop()
      const got: Received[] = []
      await start(messaging(), [messageHandler({ topic, group }, async (message, ctx) => { got.push({ message, ctx, at: Date.now() }) })])
      await eventually(() => got.length === 1, 'the redelivery', 45_000)
      expect(got[0]!.message).to.deep.equal({ n: 1 })
      expect(dead).to.have.length(0)
    })

    it('a handler that exceeds its timeout is aborted through ctx.signal and the attempt counts as failed', async function () {
      const m = messaging()
      const topic = randomName()
      const attempts: Array<{ attempt: number, aborted: boolean }> = []
      await start(m, [messageHandler({ topic, group: randomName('g'), timeout: 100, retryDelay: 10 }, async (_msg, ctx) => {
        const entry = { attempt: ctx.attempt, aborted: false }
        attempts.push(entry)
        if (ctx.attempt === 1) {
          await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => { entry.aborted = true; resolve() }))
        }
      })])
      await m.publishEvent('job', {}, { topic })
      await eventually(() => attempts.length === 2, 'the second attempt')
      expect(attempts[0]).to.deep.equal({ attempt: 1, aborted: true })
    })

    if (target.features.newGroupReadsHistory) {
      it('a new group starts from the earliest retained message', async function () {
        const m = messaging()
        const topic = randomName()
        for (let n = 0; n < 3; n++) await m.publishEvent('early', { n }, { topic, key: 'k' })
        const got: number[] = []
        await start(m, [messageHandler({ topic, group: randomName('late') }, async (msg: unknown) => { got.push((msg as { n: number }).n) })])
        await eventually(() => got.length === 3, 'the three earlier messages')
        expect(got).to.deep.equal([0, 1, 2])
      })
    }

    describe('retries, timeouts and handler errors (issue 7)', function () {
      /**
       * Keys for messages that must not share a Kafka partition (each partition hands over
       * one message at a time, in order): `count` keys on distinct partitions, avoiding
       * `avoid`. On other brokers any distinct keys do.
       */
      function keysOnPartitions (prefix: string, count: number, partitions: number, avoid: Set<number>, distinct: boolean): { keys: string[], used: Set<number> } {
        const keys: string[] = []
        const used = new Set<number>()
        const partitioner = Partitioners.DefaultPartitioner()
        const partitionMetadata = [...Array(partitions).keys()].map(partitionId => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }))
        for (let i = 0; keys.length < count; i++) {
          const key = `${prefix}${i}`
          if (target.kind !== 'kafka') { keys.push(key); continue }
          const p = partitioner({ topic: 't', partitionMetadata, message: { key, value: null } })
          if (avoid.has(p) || (distinct && used.has(p))) continue
          keys.push(key)
          used.add(p)
        }
        return { keys, used }
      }

      it('messages waiting for a long retry never stall the others: with concurrency 1, 20 messages flow while 5 wait (Kafka: 2, on their own partitions), and at stop they are given back', async function () {
        // Kafka hands over one message per partition at a time (key order), so a waiting message
        // holds its partition: there, two wait on two of the three partitions and the rest flow on the third.
        const m = messaging()
        const topic = randomName()
        const group = randomName('g')
        const poison = keysOnPartitions('k', target.kind === 'kafka' ? 2 : 5, 3, new Set(), true)
        const healthy = keysOnPartitions('h', 20, 3, poison.used, false)
        const failed: string[] = []
        const handled: string[] = []
        const runner = await start(m, [messageHandler({ topic, group, concurrency: 1, retryDelay: 60_000, backoff: 'fixed', maxRetries: 1, durableRetryAfter: false }, async (msg: unknown, ctx) => {
          const { id, poison } = msg as { id: string, poison: boolean }
          if (poison && ctx.attempt === 1) {
            failed.push(id)
            throw new Error('fails once, then waits a minute')
          }
          handled.push(id)
        })])
        for (const key of poison.keys) await m.publishEvent('job', { id: key, poison: true }, { topic, key })
        await eventually(() => failed.length === poison.keys.length, 'the first attempts of the failing ones')
        for (const key of healthy.keys) await m.publishEvent('job', { id: key, poison: false }, { topic, key })
        await eventually(() => handled.length === 20, 'the twenty healthy messages while the others wait for their retry', 20_000)
        expect([...handled].sort()).to.deep.equal([...healthy.keys].sort())
        expect([...failed].sort()).to.deep.equal([...poison.keys].sort())
        await runner.stop()
        // Given back, not lost: another member of the group gets them.
        const again: string[] = []
        await start(messaging(), [messageHandler({ topic, group }, async (msg: unknown) => { again.push((msg as { id: string }).id) })])
        await eventually(() => again.length >= poison.keys.length, 'the released messages', 45_000)
        expect([...new Set(again)].sort()).to.deep.equal([...poison.keys].sort())
      })

      it('a handler that ignores ctx.signal past its timeout keeps its slot and key until it returns: never two calls at once with concurrency 1, same-key order kept', async function () {
        const m = messaging()
        const topic = randomName()
        const group = randomName('g')
        const dead = await deadLetters(m, topic, group)
        const calls: string[] = []
        let running = 0
        let most = 0
        await start(m, [messageHandler({ topic, group, timeout: 100, maxRetries: 1, retryDelay: 10, concurrency: 1 }, async (msg: unknown, ctx) => {
          running++
          most = Math.max(most, running)
          const n = (msg as { n: number }).n
          calls.push(`${n}:${ctx.attempt}`)
          try {
            if (n === 0) await sleep(400) // ignores ctx.signal
          } finally {
            running--
          }
        })])
        for (const n of [0, 1, 2]) await m.producer.send(topic, { n }, { key: 'a' })
        await eventually(() => calls.length === 4 && dead.length === 1, 'both attempts of the slow message, its dead letter and the two next ones')
        expect(most, 'calls running at once').to.equal(1)
        expect(calls).to.deep.equal(['0:1', '0:2', '1:1', '2:1'])
        expect(dead[0]!.ctx.headers[DLQ_HEADERS.attempts]).to.equal('2')
        expect(dead[0]!.ctx.headers[DLQ_HEADERS.reason]).to.match(/^HandlerTimeoutError: the handler did not finish within its timeout of 100 ms/)
      })

      it('a handler error with retriable: false (a PublishError, a HeraldError) is dead-lettered after one attempt', async function () {
        const m = messaging()
        const topic = randomName()
        const group = randomName('g')
        const dead = await deadLetters(m, topic, group)
        const attempts: string[] = []
        await start(m, [messageHandler({ topic, group, maxRetries: 3, retryDelay: 10 }, async (msg: unknown) => {
          const kind = (msg as { kind: string }).kind
          attempts.push(kind)
          if (kind === 'publish') throw new PublishError('follow-ups', 'order.followed', new HeraldError('the message is over maxMessageBytes', { retriable: false }))
          throw new HeraldError('a mistake trying again cannot fix', { retriable: false })
        })])
        await m.producer.send(topic, { kind: 'publish' }, { key: 'a' })
        await m.producer.send(topic, { kind: 'herald' }, { key: 'a' })
        await eventually(() => dead.length === 2, 'both dead letters')
        expect(attempts).to.deep.equal(['publish', 'herald'])
        expect(dead.map(d => d.ctx.headers[DLQ_HEADERS.attempts])).to.deep.equal(['1', '1'])
        expect(dead[0]!.ctx.headers[DLQ_HEADERS.reason]).to.match(/^PublishError: could not publish event "order.followed"/)
      })

      it('a schema with string formats (email, uuid, date-time) accepts valid values and dead-letters an invalid one with the path', async function () {
        const m = messaging()
        const topic = randomName()
        const group = randomName('g')
        const dead = await deadLetters(m, topic, group)
        const got: unknown[] = []
        const schema = Type.Object({
          email: Type.String({ format: 'email' }),
          id: Type.String({ format: 'uuid' }),
          at: Type.String({ format: 'date-time' })
        })
        await start(m, [messageHandler({ topic, group, schema }, async (msg) => { got.push(msg) })])
        const valid = { email: 'ada@example.com', id: '0f8fad5b-d9cb-469f-a165-70867728950e', at: '2024-02-29T12:30:00.5Z' }
        await m.publishEvent('signup', valid, { topic, key: 'a' })
        await m.publishEvent('signup', { ...valid, email: 'not an email' }, { topic, key: 'a' })
        await eventually(() => got.length === 1 && dead.length === 1, 'the valid message and the dead letter')
        expect(got[0]).to.deep.equal(valid)
        expect(dead[0]!.ctx.headers[DLQ_HEADERS.reason]).to.contain('/email:').and.to.contain("'email' format")
      })
    })

    batchCases({ messaging, start, deadLetters })
  })
}

/** The deep merge found in many codebases: it copies every key, `__proto__` and `constructor` included. */
function naiveMerge (target: Record<string, unknown>, source: unknown): Record<string, unknown> {
  if (source === null || typeof source !== 'object') return target
  for (const key of Object.keys(source)) {
    const value = (source as Record<string, unknown>)[key]
    if (value !== null && typeof value === 'object') {
      const inner = (target[key] ?? {}) as Record<string, unknown>
      target[key] = naiveMerge(inner, value)
    } else {
      target[key] = value
    }
  }
  return target
}
