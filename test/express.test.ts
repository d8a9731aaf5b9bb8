import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { expect } from 'chai'
import express, { type ErrorRequestHandler, type Express, type Request } from 'express'
import request from 'supertest'
import { emit, herald } from '../plugins/express.js'
import { createMessaging, Messaging, type MessagingOptions } from '../lib/messaging.js'
import { ConfigError, PublishError } from '../lib/errors.js'
import { expectEnvelope as expectPublishedEnvelope, published, rabbitQueueDepth, rabbitRefusingTopic, type Published } from './published.js'
import { brokerSelected, sleep } from './helpers.js'
import { sharedMemoryStore } from '../lib/brokers/memory/index.js'
import { RecordingLogger } from './support/recording-logger.js'

const SOURCE = 'express-test-service'
const memory: MessagingOptions = { broker: 'memory', logger: false, source: SOURCE }

function expectEnvelope (p: Published, expected: { name: string, data: unknown, key?: string, topic: string }): void {
  expectPublishedEnvelope(p, { ...expected, source: SOURCE })
}

/** Replies `{ message }` with the error's status (default 500), like a typical service. */
const errorHandler: ErrorRequestHandler = (err: Error & { status?: number }, _req, res, _next) => {
  res.status(err.status ?? 500).json({ message: err.message })
}

describe('Express middleware', function () {
  const closers: Array<() => Promise<void>> = []
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }

  before(function () { process.on('unhandledRejection', onUnhandled) })
  after(function () { process.off('unhandledRejection', onUnhandled) })

  /** An app with express.json() and herald(options); the middleware is closed after the test. */
  function appWith (options: Parameters<typeof herald>[0] = memory): { app: Express, middleware: ReturnType<typeof herald> } {
    const middleware = herald(options)
    closers.push(() => middleware.close())
    const app = express()
    app.use(express.json())
    app.use(middleware)
    return { app, middleware }
  }

  function messaging (extra: MessagingOptions = {}): Messaging {
    const m = createMessaging({ ...memory, ...extra })
    closers.push(() => m.close())
    return m
  }

  afterEach(async function () {
    for (const close of closers.splice(0).reverse()) await close()
    expect(unhandled.splice(0), 'unhandled rejections').to.deep.equal([])
  })

  describe('publishing from a route', function () {
    it('a 2xx res.json() publishes the body as an event, with the envelope, headers, key and topic', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/users', emit({ name: 'user.created', topic, keyField: 'id' }), (req, res) => {
        res.status(201).json({ id: 42, email: req.body.email })
      })

      const res = await request(app).post('/users').send({ email: 'user@example.com' })

      expect(res.status).to.equal(201)
      expect(res.body).to.deep.equal({ id: 42, email: 'user@example.com' })
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'user.created', data: { id: 42, email: 'user@example.com' }, key: '42', topic })
    })

    it('res.json() serializes once with the app\'s json settings: the event data is the text the client received', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.set('json spaces', 2)
      app.set('json escape', true)
      app.set('json replacer', (key: string, value: unknown) => key === 'secret' ? undefined : value)
      app.post('/users', emit({ name: 'user.created', topic, keyField: 'id' }), (req, res) => {
        res.status(201).json({ id: 42, bio: '<b>&</b>', secret: 's3cr3t' })
      })

      const res = await request(app).post('/users').send({})

      expect(res.status).to.equal(201)
      expect(res.headers['content-type']).to.match(/^application\/json/)
      expect(res.text).to.include('\\u003cb\\u003e').and.not.include('s3cr3t')
      const wire = sharedMemoryStore().entries(topic)[0]!.value.toString('utf8')
      expect(wire).to.include(`"data":${res.text},"timestamp":`)
      expectEnvelope(published(topic)[0]!, { name: 'user.created', data: { id: 42, bio: '<b>&</b>' }, key: '42', topic })
    })

    it('works with Express 5 async handlers', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/orders', emit({ name: 'order.placed', topic, keyField: 'id' }), async (req, res) => {
        await sleep(10)
        res.status(201).json({ id: 'o-1', total: req.body.total })
      })

      const res = await request(app).post('/orders').send({ total: 12.5 })

      expect(res.status).to.equal(201)
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'order.placed', data: { id: 'o-1', total: 12.5 }, key: 'o-1', topic })
    })

    it('res.send(object) publishes like res.json()', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/things', emit({ name: 'thing.made', topic, keyField: 'id' }), (req, res) => { res.send({ id: 7 }) })

      const res = await request(app).post('/things')

      expect(res.status).to.equal(200)
      expect(published(topic).map(p => p.event.data)).to.deep.equal([{ id: 7 }])
    })

    it('the 2xx response is sent only once the broker has acknowledged the event', async function () {
      const topic = randomUUID()
      // The producer holds each batch for 300 ms: a response that did not wait for the
      // acknowledgement would arrive before the event is in the broker.
      const { app } = appWith({ messaging: messaging({ linger: 300 }) })
      app.post('/slow', emit({ name: 'slow.done', topic }), async (req, res) => { res.json({ ok: true }) })

      const started = Date.now()
      const res = await request(app).post('/slow')

      expect(published(topic), 'events in the broker when the response arrived').to.have.length(1)
      expect(res.status).to.equal(200)
      expect(Date.now() - started).to.be.at.least(250)
    })

    it('a 4xx response publishes nothing and is sent as the handler made it', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/users', emit({ name: 'user.created', topic }), async (req, res) => {
        res.status(409).json({ error: 'email taken' })
      })

      const res = await request(app).post('/users')

      expect(res.status).to.equal(409)
      expect(res.body).to.deep.equal({ error: 'email taken' })
      expect(published(topic)).to.have.length(0)
    })

    it('an async handler that throws (5xx) publishes nothing', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/users', emit({ name: 'user.created', topic }), async () => {
        throw new Error('database down')
      })
      app.use(errorHandler)

      const res = await request(app).post('/users')

      expect(res.status).to.equal(500)
      expect(res.body).to.deep.equal({ message: 'database down' })
      expect(published(topic)).to.have.length(0)
    })

    it('an array of events publishes every one of them before responding', async function () {
      const users = randomUUID()
      const audit = randomUUID()
      const { app } = appWith()
      app.post('/users', emit([
        { name: 'user.created', topic: users, keyField: 'id' },
        { name: 'audit.recorded', topic: audit, includeResult: false },
        { name: 'user.welcome', topic: users, keyField: 'id', data: (result: { email: string }) => ({ to: result.email }) }
      ]), async (req, res) => { res.status(201).json({ id: 5, email: 'five@example.com' }) })

      const res = await request(app).post('/users')

      expect(res.status).to.equal(201)
      const onUsers = published(users)
      expect(onUsers.map(p => p.event.name).sort()).to.deep.equal(['user.created', 'user.welcome'])
      expectEnvelope(onUsers.find(p => p.event.name === 'user.created')!, { name: 'user.created', data: { id: 5, email: 'five@example.com' }, key: '5', topic: users })
      expectEnvelope(onUsers.find(p => p.event.name === 'user.welcome')!, { name: 'user.welcome', data: { to: 'five@example.com' }, key: '5', topic: users })
      const onAudit = published(audit)
      expect(onAudit).to.have.length(1)
      expectEnvelope(onAudit[0]!, { name: 'audit.recorded', data: {}, key: undefined, topic: audit })
    })

    it('includeResult: false publishes {} as the data, still keyed by the result', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/sessions', emit({ name: 'session.opened', topic, keyField: 'userId', includeResult: false }),
        (req, res) => { res.json({ userId: 9, token: 'secret-token' }) })

      await request(app).post('/sessions')

      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'session.opened', data: {}, key: '9', topic })
    })

    it('data() receives the body and the Express request, and what it returns is published', async function () {
      const topic = randomUUID()
      const seen: Array<{ result: unknown, req: Request }> = []
      const { app } = appWith()
      app.post('/users', emit({
        name: 'user.created',
        topic,
        keyField: 'id',
        data: (result: { id: number }, req: Request) => {
          seen.push({ result, req })
          return { id: result.id, tenant: req.get('x-tenant') }
        }
      }), (req, res) => { res.status(201).json({ id: 3, email: 'three@example.com' }) })

      const res = await request(app).post('/users').set('x-tenant', 'acme')

      expect(res.status).to.equal(201)
      expect(seen).to.have.length(1)
      expect(seen[0]!.result).to.deep.equal({ id: 3, email: 'three@example.com' })
      expect(seen[0]!.req.originalUrl).to.equal('/users')
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'user.created', data: { id: 3, tenant: 'acme' }, key: '3', topic })
    })

    it('a 204 ended without a body publishes the event with null data, before the response', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.delete('/users/:id', emit({ name: 'user.deleted', topic, data: (_result, req: Request) => ({ id: req.params.id }) }),
        (req, res) => { res.status(204).end() })
      app.delete('/posts/:id', emit({ name: 'post.deleted', topic }), (req, res) => { res.sendStatus(204) })

      const res = await request(app).delete('/users/u-1')
      expect(res.status).to.equal(204)
      expect(published(topic).map(p => p.event.data)).to.deep.equal([{ id: 'u-1' }])

      await request(app).delete('/posts/p-1')
      expect(published(topic).map(p => [p.event.name, p.event.data])).to.deep.equal([['user.deleted', { id: 'u-1' }], ['post.deleted', null]])
    })

    it('a text body sent with res.send() is published as the text', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.post('/ping', emit({ name: 'pinged', topic }), (req, res) => { res.type('text').send('pong') })

      const res = await request(app).post('/ping')

      expect(res.text).to.equal('pong')
      expect(published(topic).map(p => p.event.data)).to.deep.equal(['pong'])
    })

    it('a HEAD request to a GET route with emit() publishes nothing', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      app.get('/report', emit({ name: 'report.viewed', topic }), (req, res) => { res.json({ rows: 1 }) })

      const head = await request(app).head('/report')
      expect(head.status).to.equal(200)
      expect(published(topic)).to.have.length(0)

      await request(app).get('/report')
      expect(published(topic)).to.have.length(1)
    })
  })

  describe('every way a 2xx leaves waits for its event', function () {
    it('res.json() called twice: the second throws ERR_HTTP_HEADERS_SENT as in Express, and the client gets the first body after its event', async function () {
      const topic = randomUUID()
      const { app } = appWith({ messaging: messaging({ linger: 100 }) })
      let second: unknown
      app.post('/users', emit({ name: 'user.created', topic, keyField: 'id' }), (req, res) => {
        res.status(201).json({ id: 1 })
        try {
          res.json({ id: 2 })
        } catch (err) {
          second = err
        }
      })

      const res = await request(app).post('/users')

      expect(published(topic).map(p => p.event.data), 'events in the broker when the response arrived').to.deep.equal([{ id: 1 }])
      expect(res.status).to.equal(201)
      expect(res.body).to.deep.equal({ id: 1 })
      expect((second as { code?: string } | undefined)?.code).to.equal('ERR_HTTP_HEADERS_SENT')
    })

    it('after the body was given, an error handler\'s res.status(500).json() throws too and the 2xx with its event stands', async function () {
      const topic = randomUUID()
      const { app } = appWith()
      const codes: unknown[] = []
      app.post('/users', emit({ name: 'user.created', topic }), (req, res, next) => {
        res.json({ id: 1 })
        next(new Error('late failure'))
      })
      app.use(((err, req, res, _next) => {
        try {
          res.status(500).json({ message: err.message })
        } catch (thrown) {
          codes.push((thrown as { code?: string }).code)
        }
      }) as ErrorRequestHandler)

      const res = await request(app).post('/users')

      expect(codes).to.deep.equal(['ERR_HTTP_HEADERS_SENT'])
      expect(res.status).to.equal(200)
      expect(res.body).to.deep.equal({ id: 1 })
      expect(published(topic).map(p => p.event.data)).to.deep.equal([{ id: 1 }])
    })

    it('a body written with res.write() chunks and res.end(chunk) is published whole, then sent', async function () {
      const topic = randomUUID()
      const { app } = appWith({ messaging: messaging({ linger: 100 }) })
      app.post('/report', emit({ name: 'report.made', topic }), (req, res) => {
        res.status(201).type('json')
        res.write('{"rows":[1,')
        res.write(Buffer.from('2,'))
        res.end('3]}')
      })

      const res = await request(app).post('/report')

      expect(published(topic).map(p => p.event.data), 'events in the broker when the response arrived').to.deep.equal([{ rows: [1, 2, 3] }])
      expect(res.status).to.equal(201)
      expect(res.body).to.deep.equal({ rows: [1, 2, 3] })
    })
  })

  describe('config and set-up mistakes fail early', function () {
    const cases: Array<{ what: string, config: unknown, message: RegExp }> = [
      { what: 'a missing name', config: { topic: 'x' }, message: /^emit\(\)\.name: is required/ },
      { what: 'an unknown option', config: { name: 'x', keyfield: 'id' }, message: /^emit\(\): unknown option "keyfield"/ },
      { what: 'a wrong type', config: { name: 'x', topic: 42 }, message: /^emit\(\)\.topic: must be a non-empty topic name/ },
      { what: 'a bad entry in an array', config: [{ name: 'ok' }, { name: 'x', data: 'nope' }], message: /^emit\(\)\[1\]\.data: must be a function/ }
    ]
    for (const c of cases) {
      it(`emit() with ${c.what} throws a ConfigError naming the option`, function () {
        let thrown: unknown
        try {
          emit(c.config as never)
        } catch (err) {
          thrown = err
        }
        expect(thrown).to.be.instanceOf(ConfigError)
        expect((thrown as Error).message).to.match(c.message)
      })
    }

    it('herald() with bad options throws a ConfigError naming the option', function () {
      let thrown: unknown
      try {
        herald({ broker: 'nats' as never, logger: false })
      } catch (err) {
        thrown = err
      }
      expect(thrown).to.be.instanceOf(ConfigError)
      expect((thrown as ConfigError).option).to.equal('broker')
    })

    it('herald() refuses messaging options next to `messaging` instead of ignoring them', function () {
      expect(() => herald({ messaging: messaging(), source: 'other' })).to.throw(ConfigError, /^source: cannot be given with `messaging`/)
    })

    it('emit() without app.use(herald()) fails the request with an error saying to add it', async function () {
      const topic = randomUUID()
      let handled = false
      const app = express()
      app.post('/users', emit({ name: 'user.created', topic }), (req, res) => { handled = true; res.json({ id: 1 }) })
      app.use(errorHandler)

      const res = await request(app).post('/users')

      expect(res.status).to.equal(500)
      expect(res.body.message).to.contain('app.use(herald(')
      expect(handled, 'the handler ran').to.equal(false)
      expect(published(topic)).to.have.length(0)
    })
  })

  describe('when the event cannot be published', function () {
    /** The error record about `event`, from the recorded log. */
    const errorAbout = (logger: RecordingLogger, event: string): Record<string, unknown> | undefined =>
      logger.records.find(r => r.level === 'error' && r.fields.event === event)?.fields

    describe('the broker refuses it (RabbitMQ nacks the topic)', function () {
      let rabbit: Awaited<ReturnType<typeof rabbitRefusingTopic>>
      before(async function () {
        if (!brokerSelected('rabbitmq')) this.skip()
        rabbit = await rabbitRefusingTopic()
      })
      after(async function () { await rabbit?.cleanup() })

      it('the client gets a 503 naming the event, never the 2xx', async function () {
        const { app } = appWith({ ...rabbit.options, logger: false, source: SOURCE })
        app.post('/users', emit({ name: 'user.created', topic: rabbit.refused, keyField: 'id' }), async (req, res) => {
          res.status(201).json({ id: 1 })
        })

        const res = await request(app).post('/users')

        expect(res.status).to.equal(503)
        expect(res.headers['content-type']).to.equal('application/json; charset=utf-8')
        expect(res.body).to.include({ statusCode: 503, error: 'Service Unavailable', event: 'user.created' })
        expect(res.body.message).to.contain('"user.created"').and.to.match(/retry/i)
        expect(res.body.events).to.deep.equal([{ name: 'user.created', topic: rabbit.refused, published: false }])
        expect(res.body).to.not.have.property('id')
      })

      it('a text response whose event fails becomes the JSON 503', async function () {
        const { app } = appWith({ ...rabbit.options, logger: false, source: SOURCE })
        app.post('/ping', emit({ name: 'pinged', topic: rabbit.refused }), (req, res) => { res.send('pong') })

        const res = await request(app).post('/ping')

        expect(res.status).to.equal(503)
        expect(res.headers['content-type']).to.equal('application/json; charset=utf-8')
        expect(res.body.event).to.equal('pinged')
      })

      it('a body written with res.write() whose event fails becomes the 503: nothing was sent before the acknowledgement', async function () {
        const { app } = appWith({ ...rabbit.options, logger: false, source: SOURCE })
        app.post('/report', emit({ name: 'report.made', topic: rabbit.refused }), (req, res) => {
          res.type('json')
          res.write('{"rows":')
          res.end('3}')
        })

        const res = await request(app).post('/report')

        expect(res.status).to.equal(503)
        expect(res.body.event).to.equal('report.made')
      })

      it('logs the failure with the route pattern, the event name and its topic', async function () {
        const logger = new RecordingLogger()
        const { app } = appWith({ ...rabbit.options, logger, source: SOURCE })
        app.post('/users/:id', emit({ name: 'user.updated', topic: rabbit.refused }), (req, res) => { res.json({ id: 1 }) })

        await request(app).post('/users/1')

        const record = errorAbout(logger, 'user.updated')
        expect(record, logger.describe()).to.not.equal(undefined)
        expect(record!.topic).to.equal(rabbit.refused)
        expect(record!.route).to.equal('POST /users/:id')
      })

      it('a route with two events where the second is refused answers 503 naming which one was published', async function () {
        const { app } = appWith({ ...rabbit.options, logger: false, source: SOURCE })
        app.post('/orders', emit([{ name: 'order.placed', topic: rabbit.good }, { name: 'order.audited', topic: rabbit.refused }]),
          (req, res) => { res.status(201).json({ id: 'o-1' }) })

        const res = await request(app).post('/orders')

        expect(res.status).to.equal(503)
        expect(res.body).to.include({ statusCode: 503, error: 'Service Unavailable', event: 'order.audited' })
        expect(res.body.events).to.deep.equal([
          { name: 'order.placed', topic: rabbit.good, published: true },
          { name: 'order.audited', topic: rabbit.refused, published: false }
        ])
        expect(res.body.message).to.contain('"order.audited" could not be published').and.to.contain('"order.placed" was published')
        expect(await rabbitQueueDepth(rabbit.good)).to.equal(1)
      })
    })

    describe('a bug in the reply or its event is a 500 (next(err)), and nothing is published', function () {
      it('a data() mapper that throws gives a 500, and the route\'s other events are not published either', async function () {
        const topic = randomUUID()
        const logger = new RecordingLogger()
        const { app } = appWith({ ...memory, logger })
        app.post('/users', emit([{ name: 'user.created', topic }, { name: 'user.welcome', topic, data: () => { throw new Error('mapper bug') } }]),
          async (req, res) => { res.status(201).json({ id: 1 }) })
        app.use(errorHandler)

        const res = await request(app).post('/users')

        expect(res.status).to.equal(500)
        expect(res.body.message).to.contain('user.welcome').and.to.contain('mapper bug')
        expect(published(topic)).to.have.length(0)
        const record = errorAbout(logger, 'user.welcome')
        expect(record, logger.describe()).to.not.equal(undefined)
        expect(record!.route).to.equal('POST /users')
      })

      it('a messaging instance closed while the app still serves is a 500 (a retry cannot help), not a 503', async function () {
        const topic = randomUUID()
        const m = messaging()
        const { app } = appWith({ messaging: m })
        app.post('/users', emit({ name: 'user.created', topic }), (req, res) => { res.status(201).json({ id: 1 }) })
        app.use(errorHandler)
        await m.close()

        const res = await request(app).post('/users')

        expect(res.status).to.equal(500)
        expect(res.body.message).to.contain('"user.created"').and.to.contain('closed')
        expect(published(topic)).to.have.length(0)
      })

      it('data holding a BigInt (not JSON) gives a 500', async function () {
        const topic = randomUUID()
        const { app } = appWith()
        app.post('/counters', emit({ name: 'counter.bumped', topic, data: () => ({ n: 10n }) }), (req, res) => { res.json({ ok: true }) })
        app.use(errorHandler)

        const res = await request(app).post('/counters')

        expect(res.status).to.equal(500)
        expect(res.body.message).to.contain('counter.bumped').and.to.contain('BigInt')
        expect(published(topic)).to.have.length(0)
      })

      it('an event over maxMessageBytes gives a 500, logged with the route and the event', async function () {
        const topic = randomUUID()
        const logger = new RecordingLogger()
        const { app } = appWith({ ...memory, logger, maxMessageBytes: 1024 })
        app.set('env', 'test')
        app.post('/files/:id', emit({ name: 'file.stored', topic }), (req, res) => { res.json({ content: 'x'.repeat(2000) }) })

        const res = await request(app).post('/files/7')

        // No error handler: Express's own 500.
        expect(res.status).to.equal(500)
        expect(res.text).to.not.contain('xxxx')
        expect(published(topic)).to.have.length(0)
        const record = errorAbout(logger, 'file.stored')
        expect(record, logger.describe()).to.not.equal(undefined)
        expect(record!.route).to.equal('POST /files/:id')
        expect(record!.code).to.equal('HERALD_MESSAGE_TOO_LARGE')
      })

      it('a body without the keyField gives a 500 instead of an event with no key', async function () {
        const topic = randomUUID()
        const { app } = appWith()
        app.post('/users', emit({ name: 'user.created', topic, keyField: 'id' }), (req, res) => { res.status(201).json({ email: 'no-id@example.com' }) })
        app.use(errorHandler)

        const res = await request(app).post('/users')

        expect(res.status).to.equal(500)
        expect(res.body.message).to.contain('keyField "id"')
        expect(published(topic)).to.have.length(0)
      })
    })

    const redisAdapter = new URL('../lib/brokers/redis/index.ts', import.meta.url)
    it('an unreachable broker gives the client a 503 rather than a hanging request', async function () {
      if (!existsSync(redisAdapter)) this.skip()
      this.timeout(15_000)
      const { app } = appWith({ broker: 'redis', url: 'redis://127.0.0.1:1', logger: false, source: SOURCE, publishTimeout: 300 })
      app.post('/users', emit({ name: 'user.created', topic: randomUUID() }), async (req, res) => { res.status(201).json({ id: 1 }) })

      const started = Date.now()
      const res = await request(app).post('/users')

      expect(res.status).to.equal(503)
      expect(res.body.event).to.equal('user.created')
      expect(Date.now() - started).to.be.below(5_000)
    })
  })

  describe('the herald() middleware', function () {
    it('sets req.messaging and app.locals.messaging to its instance', async function () {
      const { app, middleware } = appWith()
      let seen: unknown
      app.get('/who', (req, res) => { seen = req.messaging; res.json({ same: req.app.locals.messaging === req.messaging }) })

      const res = await request(app).get('/who')

      expect(middleware.messaging).to.be.instanceOf(Messaging)
      expect(middleware.messaging.options.source).to.equal(SOURCE)
      expect(seen).to.equal(middleware.messaging)
      expect(res.body).to.deep.equal({ same: true })
      expect(app.locals.messaging).to.equal(middleware.messaging)
    })

    it('app.use(herald()) sets app.locals.messaging at once, before any request', function () {
      const middleware = herald(memory)
      closers.push(() => middleware.close())
      const app = express()

      app.use(middleware)

      expect(app.locals.messaging).to.equal(middleware.messaging)
    })

    it('uses the messaging instance passed in', async function () {
      const m = messaging()
      const { app, middleware } = appWith({ messaging: m })
      let seen: unknown
      app.get('/who', (req, res) => { seen = req.messaging; res.end() })

      await request(app).get('/who')

      expect(middleware.messaging).to.equal(m)
      expect(seen).to.equal(m)
    })

    it('close() closes the messaging herald() created', async function () {
      const middleware = herald(memory)

      await middleware.close()

      let thrown: unknown
      await middleware.messaging.publishEvent('after.close', {}, { topic: randomUUID() }).catch((err: unknown) => { thrown = err })
      expect(thrown).to.be.instanceOf(PublishError)
    })

    it('close() leaves a messaging passed in open, unless closeMessaging: true', async function () {
      const topic = randomUUID()
      const kept = messaging()
      const closed = messaging()

      await herald({ messaging: kept }).close()
      await herald({ messaging: closed, closeMessaging: true }).close()

      await kept.publishEvent('still.open', {}, { topic })
      expect(published(topic)).to.have.length(1)
      let thrown: unknown
      await closed.publishEvent('after.close', {}, { topic }).catch((err: unknown) => { thrown = err })
      expect(thrown).to.be.instanceOf(PublishError)
    })

    it('connect() rejects when the broker cannot be reached, so start-up can fail', async function () {
      const m = messaging()
      await m.close()
      let thrown: unknown
      await herald({ messaging: m }).connect().catch((err: unknown) => { thrown = err })
      expect(thrown).to.be.instanceOf(Error)
      expect((thrown as Error).message).to.contain('closed')
    })
  })
})
