// Bad input gets a clear answer: options, environment values and message bodies Herald
// cannot use are refused with the option's name and the fix. (What a consumer does with a
// bad message on each broker is in the conformance suite.)
import { expect } from 'chai'
import { Type } from '@sinclair/typebox'
import {
  batchHandler, ConfigError, consumer, createMessaging, HandlerError, InvalidMessageError, messageHandler, onEvent, startConsumers,
  type Messaging
} from '../lib/index.js'
import { decodeBody, decodeMessage } from '../lib/event.js'
import { failureReason } from '../lib/runner/failure-reason.js'

function thrown (fn: () => unknown): Error {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected an error')
}

async function rejected (promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

describe('bad input', function () {
  describe('handler options are checked when the handler is defined, naming the option and the fix', function () {
    const cases: Array<{ options: Record<string, unknown>, message: string }> = [
      { options: { maxRetries: -1 }, message: 'maxRetries must be a whole number of at least 0, got -1; e.g. maxRetries: 3 (retries after the first attempt; 0 for none)' },
      { options: { maxRetries: 2.5 }, message: 'maxRetries must be a whole number of at least 0, got 2.5; e.g. maxRetries: 3' },
      { options: { backoff: 'linear' }, message: 'backoff must be "exponential" or "fixed", got "linear"; use "exponential" for retryDelay × 2^(retry−1), or "fixed" for the same delay before every retry' },
      { options: { retryDelay: '5s' }, message: 'retryDelay must be a whole number of milliseconds from 0 to 2147483647, got "5s" (a number, not a string); e.g. retryDelay: 5000 for 5 seconds' },
      // A Node.js timer longer than about 24.8 days fires at once: such a delay would retry immediately.
      { options: { retryDelay: 3_000_000_000 }, message: 'retryDelay must be a whole number of milliseconds from 0 to 2147483647, got 3000000000; e.g. retryDelay: 5000' },
      { options: { maxRetryDelay: -5 }, message: 'maxRetryDelay must be a whole number of milliseconds from 0 to 2147483647, got -5; e.g. maxRetryDelay: 60000' },
      { options: { concurrency: 0 }, message: 'concurrency must be a whole number from 1 to 100000, got 0; e.g. concurrency: 10 (1 handles one message at a time)' },
      { options: { timeout: 0 }, message: 'timeout must be a whole number of milliseconds from 1 to 2147483647, got 0; e.g. timeout: 30000 for 30 seconds, or leave it out for no timeout' },
      { options: { group: '' }, message: 'group must be a non-empty string, got ""; name the consumer group, e.g. group: "billing", or leave it out to use the service name (source)' },
      { options: { topic: [] }, message: 'topic must be a topic name or a non-empty array of them, got []; e.g. topic: "orders" or topic: ["orders", "payments"]' },
      { options: { topic: 5 }, message: 'topic must be a topic name or a non-empty array of them, got 5; e.g. topic: "orders"' },
      { options: { topic: ['orders', ''] }, message: 'topic must be a topic name or a non-empty array of them, got ["orders",""]' },
      { options: { schema: { type: 'object', properties: {} } }, message: 'schema must be a TypeBox schema made with Type.* from @sinclair/typebox, e.g. schema: Type.Object({ id: Type.Number() }); got {"type":"object","properties":{}}' },
      { options: { schema: 'OrderCreated' }, message: 'schema must be a TypeBox schema made with Type.* from @sinclair/typebox' },
      { options: { deadLetter: '' }, message: 'deadLetter must be a topic name or false, got ""; name a destination such as "orders.failed", leave it out for "<topic>.<group>.dlq", or set false to drop failed messages' },
      { options: { deadLetter: true }, message: 'deadLetter must be a topic name or false, got true' },
      { options: { maxMessageBytes: 0 }, message: 'maxMessageBytes must be a whole number of bytes of at least 1, got 0; e.g. maxMessageBytes: 1048576 for 1 MiB' },
      { options: { durableRetryAfter: true }, message: 'durableRetryAfter must be a whole number of milliseconds from 0 to 2147483647, got true; e.g. durableRetryAfter: 60000 to store retries of a minute or more in the broker, or false to keep every retry in the process' },
      { options: { autoStart: 'yes' }, message: 'autoStart must be true or false, got "yes"' },
      { options: { raw: 'yes' }, message: 'raw must be true or false, got "yes"; raw: true hands the handler the message body as a Buffer, undecoded' },
      { options: { raw: true, schema: Type.Object({ id: Type.Number() }) }, message: 'raw: true and a schema cannot go together: a raw handler gets the body as a Buffer, undecoded, so there is nothing to validate; remove the schema (and check the bytes in the handler), or remove raw to get the decoded JSON validated' },
      { options: { retries: 5 }, message: 'unknown option "retries"; did you mean "maxRetries"? The options are: topic, group, schema, concurrency, autoStart, maxMessageBytes, maxRetries, retryDelay, backoff, maxRetryDelay, deadLetter, timeout' },
      { options: { topics: ['orders'] }, message: 'unknown option "topics"; did you mean "topic"?' },
      { options: { retry_delay: 100 }, message: 'unknown option "retry_delay"; did you mean "retryDelay"?' }
    ]
    for (const c of cases) {
      it(`refuses ${JSON.stringify(c.options)}`, function () {
        const err = thrown(() => messageHandler({ topic: 'orders', ...c.options } as never, async function chargeCard () {}))
        expect(err).to.be.instanceOf(HandlerError)
        expect(err.message).to.contain(`messageHandler "chargeCard": ${c.message}`)
      })
    }

    it('a TypeBox schema is compiled at once, and a valid set of options is accepted', function () {
      const definition = messageHandler({
        topic: ['orders', 'payments'], group: 'billing', schema: Type.Object({ id: Type.Number() }), maxRetries: 0, retryDelay: 0,
        backoff: 'fixed', maxRetryDelay: 10, deadLetter: false, timeout: 1, concurrency: 1, autoStart: false, maxMessageBytes: 10
      }, async function ok () {})
      expect(definition.topics).to.deep.equal(['orders', 'payments'])
      expect(definition.maxMessageBytes).to.equal(10)
    })

    it('batchHandler options are checked when the handler is defined, naming the option and the fix', function () {
      const define = (options: Record<string, unknown>): Error => thrown(() => batchHandler({ topic: 'orders', ...options } as never, async function saveOrders () {}))
      expect(define({ maxBatchSize: 0 })).to.be.instanceOf(HandlerError)
      expect(define({ maxBatchSize: 0 }).message).to.equal('batchHandler "saveOrders": maxBatchSize must be a whole number from 1 to 10000, got 0; e.g. maxBatchSize: 100 (the most messages in one batch)')
      expect(define({ maxWaitMs: '1s' }).message).to.equal('batchHandler "saveOrders": maxWaitMs must be a whole number of milliseconds from 0 to 2147483647, got "1s" (a number, not a string); e.g. maxWaitMs: 50 to wait up to 50 ms for a batch to fill')
      expect(define({ batchSize: 10 }).message).to.match(/^batchHandler "saveOrders": unknown option "batchSize"; did you mean "maxBatchSize"\? The options are: topic, group, schema, maxBatchSize, maxWaitMs,/)
      // One batch runs at a time (per-key order): there is no concurrency to set.
      expect(define({ concurrency: 4 }).message).to.contain('batchHandler "saveOrders": unknown option "concurrency"')
      expect(define({ raw: true }).message).to.contain('batchHandler "saveOrders": unknown option "raw"')
      expect(thrown(() => batchHandler({ topic: 'orders' }, undefined as never)).message).to.equal('batchHandler(options, fn): fn must be a function (items, ctx) => …')
      const ok = batchHandler({ topic: ['orders', 'payments'], group: 'billing', maxBatchSize: 500, maxWaitMs: 0, maxRetries: 0 }, async function saveAll () {})
      expect(ok.topics).to.deep.equal(['orders', 'payments'])
      expect(ok.name).to.equal('saveAll')
    })

    it('@onEvent options are checked when the class is defined, naming the method', function () {
      const bad = thrown(() => {
        @consumer('billing', { topics: ['orders'] })
        class Billing {
          @onEvent('order.placed', { maxRetries: -1 }) async placed (): Promise<void> {}
        }
        return Billing
      })
      expect(bad).to.be.instanceOf(HandlerError)
      expect(bad.message).to.equal('@onEvent method placed: maxRetries must be a whole number of at least 0, got -1; e.g. maxRetries: 3 (retries after the first attempt; 0 for none)')
      const typo = thrown(() => {
        @consumer('billing', { topics: ['orders'] })
        class Billing {
          @onEvent('order.placed', { retry: 3 } as never) async placed (): Promise<void> {}
        }
        return Billing
      })
      expect(typo.message).to.match(/^@onEvent method placed: unknown option "retry"; did you mean "(maxRetries|retryDelay)"\? The options are: schema, maxRetries/)
      const schema = thrown(() => {
        @consumer('billing', { topics: ['orders'] })
        class Billing {
          @onEvent('order.placed', { schema: { type: 'object' } as never }) async placed (): Promise<void> {}
        }
        return Billing
      })
      expect(schema.message).to.contain('@onEvent method placed: schema must be a TypeBox schema')
      const raw = thrown(() => {
        @consumer('billing', { topics: ['orders'] })
        class Billing {
          @onEvent('order.placed', { raw: true, schema: Type.Object({ id: Type.Number() }) } as never) async placed (): Promise<void> {}
        }
        return Billing
      })
      expect(raw).to.be.instanceOf(HandlerError)
      expect(raw.message).to.contain('@onEvent method placed: raw: true and a schema cannot go together')
    })

    it('@consumer options are checked when the class is defined, naming the class', function () {
      const define = (group: string, options: unknown): Error => thrown(() => {
        @consumer(group, options as never)
        class Shipping {
          @onEvent('order.paid') async paid (): Promise<void> {}
        }
        return Shipping
      })
      expect(define('shipping', { topic: 'orders' }).message).to.match(/^@consumer class Shipping: unknown option "topic"; did you mean "topics"\?/)
      expect(define('shipping', { topics: [] }).message).to.equal('@consumer class Shipping: topics must be a topic name or a non-empty array of them, got []; e.g. topics: "orders" or topics: ["orders", "payments"]')
      expect(define('', { topics: ['orders'] }).message).to.contain('@consumer class Shipping: group must be a non-empty string, got ""; name the consumer group')
      expect(define('shipping', { topics: ['orders'], concurrency: -1 }).message).to.contain('@consumer class Shipping: concurrency must be a whole number from 1 to 100000, got -1; e.g. concurrency: 10')
    })
  })

  describe('startConsumers options are checked before anything starts', function () {
    let messaging: Messaging
    const handler = messageHandler({ topic: 'orders' }, async function noop () {})
    beforeEach(function () { messaging = createMessaging({ broker: 'memory', logger: false }) })
    afterEach(async function () { await messaging.close() })

    const cases: Array<{ options: Record<string, unknown>, message: string }> = [
      { options: { shutdownTimeout: -1 }, message: 'startConsumers: shutdownTimeout must be a whole number of milliseconds from 0 to 2147483647, got -1; e.g. shutdownTimeout: 30000' },
      { options: { maxMessageBytes: '1MB' }, message: 'startConsumers: maxMessageBytes must be a whole number of bytes of at least 1, got "1MB" (a number, not a string); e.g. maxMessageBytes: 1048576 for 1 MiB' },
      { options: { handlers: handler }, message: 'startConsumers: handlers must be an array of messageHandler(...) values or @consumer classes, e.g. handlers: [sendWelcomeEmail]' },
      { options: { topics: 5 }, message: 'startConsumers: topics must be a topic name or a non-empty array of them, got 5; e.g. topics: "orders"' },
      { options: { group: '' }, message: 'startConsumers: group must be a non-empty string, got ""' },
      { options: { signals: 'SIGTERM' }, message: 'startConsumers: signals must be an array of signal names such as ["SIGTERM", "SIGINT"], or false for none, got "SIGTERM"' },
      { options: { context: { db: 1 } }, message: 'startConsumers: context must be a function returning the fields to add to ctx, e.g. () => ({ db })' },
      { options: { dir: 42 }, message: 'startConsumers: dir must be the path of a folder of handler modules, e.g. dir: "./handlers", got 42' },
      { options: { handler: [handler] }, message: 'startConsumers: unknown option "handler"; did you mean "handlers"? The options are: dir, handlers, topics, group, messaging, context, shutdownTimeout, signals, maxMessageBytes' }
    ]
    for (const c of cases) {
      it(`refuses ${JSON.stringify(c.options, (_k, v: unknown) => v === handler ? '<handler>' : v)}`, async function () {
        const err = await rejected(startConsumers({ messaging, handlers: [handler], signals: false, ...c.options } as never))
        expect(err).to.be.instanceOf(HandlerError)
        expect(err.message).to.contain(c.message)
      })
    }
  })

  describe('environment values are checked when messaging is created, naming the variable and the fix', function () {
    const saved = { ...process.env }
    const variables = ['MESSAGING_BROKER', 'KAFKA_BOOTSTRAP_SERVERS', 'RABBITMQ_URL', 'REDIS_URL']
    beforeEach(function () { for (const v of variables) delete process.env[v] })
    afterEach(function () { process.env = { ...saved } })

    const cases: Array<{ env: Record<string, string>, option: string, message: RegExp }> = [
      { env: { MESSAGING_BROKER: 'nats' }, option: 'MESSAGING_BROKER', message: /^MESSAGING_BROKER: unknown broker "nats"; use one of "kafka", "rabbitmq", "redis", "memory"$/ },
      { env: { KAFKA_BOOTSTRAP_SERVERS: ',,' }, option: 'KAFKA_BOOTSTRAP_SERVERS', message: /^KAFKA_BOOTSTRAP_SERVERS: is empty; give at least one Kafka broker as "host:port", e\.g\. "localhost:9092"/ },
      { env: { KAFKA_BOOTSTRAP_SERVERS: 'kafka://broker:9092' }, option: 'KAFKA_BOOTSTRAP_SERVERS', message: /"kafka:\/\/broker:9092" is not "host:port"; give Kafka brokers as e\.g\. "localhost:9092" \(no scheme/ },
      { env: { REDIS_URL: 'localhost:6379' }, option: 'REDIS_URL', message: /^REDIS_URL: "localhost:6379" has scheme "localhost:", expected "redis:" or "rediss:"; use the form redis:\/\// },
      { env: { RABBITMQ_URL: 'http://guest:S3cr3t-pass@localhost:15672' }, option: 'RABBITMQ_URL', message: /^RABBITMQ_URL: "http:\/\/guest:\*\*\*@localhost:15672" has scheme "http:", expected "amqp:" or "amqps:"; use the form amqp:\/\// },
      { env: { MESSAGING_BROKER: 'rabbitmq', RABBITMQ_URL: 'amqp://guest:pa/ss@localhost' }, option: 'RABBITMQ_URL', message: /^RABBITMQ_URL: "amqp:\/\/guest:\*\*\*@localhost" is not a valid URL; use the form/ }
    ]
    for (const c of cases) {
      it(`refuses ${Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(' ')}`, function () {
        Object.assign(process.env, c.env)
        const err = thrown(() => createMessaging({ logger: false }))
        expect(err).to.be.instanceOf(ConfigError)
        expect((err as ConfigError).option).to.equal(c.option)
        expect(err.message).to.match(c.message)
        expect(err.message).not.to.contain('S3cr3t-pass').and.not.to.contain('pa/ss')
      })
    }
  })

  describe('decoding a message body', function () {
    const reason = (bytes: number[] | string): string => {
      const err = thrown(() => decodeBody(typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes)))
      expect(err).to.be.instanceOf(InvalidMessageError)
      return err.message
    }

    it('says where a body stops being UTF-8: a stray byte, a cut sequence, an overlong form, a surrogate', function () {
      expect(reason([0x61, 0x62, 0xc3, 0x28])).to.equal('the message body is not valid UTF-8 (byte 0xc3 at offset 2 of 4); Herald expects a UTF-8 JSON body')
      expect(reason([0x22, 0xe2, 0x82])).to.contain('(byte 0xe2 at offset 1 of 3)')
      expect(reason([0xc0, 0x80])).to.contain('(byte 0xc0 at offset 0 of 2)')
      expect(reason([0x22, 0xed, 0xa0, 0x80, 0x22])).to.contain('(byte 0xed at offset 1 of 5)')
    })

    it('accepts a UTF-8 byte order mark and multi-byte text', function () {
      expect(decodeBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"name":"Zoë 😀"}')])).value).to.deep.equal({ name: 'Zoë 😀' })
    })

    it('says a body is not JSON and how it starts, or that it is empty', function () {
      expect(reason('   ')).to.match(/^the message body is not JSON \(.+; it starts with " {3}"\); Herald expects a JSON body/)
      expect(reason('<xml>' + 'a'.repeat(100))).to.contain(`it starts with "<xml>${'a'.repeat(27)}…"`)
      expect(reason([])).to.equal('the message body is empty (0 bytes); Herald expects a JSON body')
    })

    it('removes __proto__ keys, even spelt with escapes, and constructor keys holding a prototype, and reports them', function () {
      const { value, removedKeys } = decodeBody(Buffer.from('{"a":{"\\u005f\\u005fproto\\u005f\\u005f":{"x":1},"b":2},"constructor":{"prototype":{"x":1}},"c":{"constructor":{"name":"kept"}}}'))
      expect(value).to.deep.equal({ a: { b: 2 }, c: { constructor: { name: 'kept' } } })
      expect(removedKeys).to.deep.equal(['__proto__', 'constructor.prototype'])
      expect(({} as Record<string, unknown>).x).to.equal(undefined)
    })

    it('an event envelope whose data holds __proto__ reaches the handler without it', function () {
      const body = '{"id":"1","name":"user.created","timestamp":"2024-01-01T00:00:00.000Z","source":"s","data":{"__proto__":{"admin":true},"id":7}}'
      const { payload, event, removedKeys } = decodeMessage(Buffer.from(body), {})
      expect(payload).to.deep.equal({ id: 7 })
      expect(event?.name).to.equal('user.created')
      expect(removedKeys).to.deep.equal(['__proto__'])
      expect((payload as Record<string, unknown>).admin).to.equal(undefined)
    })
  })

  describe('the reason given for what a handler threw', function () {
    it('an Error is its name and message, with its causes', function () {
      expect(failureReason(new TypeError('x is not a function'))).to.equal('TypeError: x is not a function')
      expect(failureReason(new Error('save failed', { cause: new Error('connection reset', { cause: 'ECONNRESET' }) })))
        .to.equal('Error: save failed (cause: Error: connection reset) (cause: a string: "ECONNRESET")')
      expect(failureReason(new Error(''))).to.equal('Error: (no message)')
    })

    it('anything else says what it was and that Herald expects an Error', function () {
      const advice = 'not an Error; throw an Error (or a NonRetriableError) so the reason has a name, a message and a stack'
      expect(failureReason(42)).to.equal(`the handler threw a number: 42, ${advice}`)
      expect(failureReason(Symbol('nope'))).to.equal(`the handler threw a symbol: Symbol(nope), ${advice}`)
      expect(failureReason(function retry () {})).to.equal(`the handler threw a function (retry), ${advice}`)
      expect(failureReason(['a', 1])).to.equal(`the handler threw an array: [ 'a', 1 ], ${advice}`)
      const cyclic: Record<string, unknown> = { id: 1 }
      cyclic.self = cyclic
      expect(failureReason(cyclic)).to.equal(`the handler threw an object: <ref *1> { id: 1, self: [Circular *1] }, ${advice}`)
      expect(failureReason('x'.repeat(2000)).length).to.be.below(700)
    })
  })
})
