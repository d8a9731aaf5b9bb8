import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { expect } from 'chai'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import request from 'supertest'
import herald, { heraldFastify } from '../plugins/fastify.js'
import { createMessaging, Messaging, type MessagingOptions } from '../lib/messaging.js'
import { ConfigError, PublishError } from '../lib/errors.js'
import { expectEnvelope as expectPublishedEnvelope, published, rabbitQueueDepth, rabbitRefusingTopic, type Published } from './published.js'
import { brokerSelected } from './helpers.js'
import { sharedMemoryStore } from '../lib/brokers/memory/index.js'

const SOURCE = 'fastify-test-service'
const memory: MessagingOptions = { broker: 'memory', logger: false, source: SOURCE }

function expectEnvelope (p: Published, expected: { name: string, data: unknown, key?: string, topic: string }): void {
  expectPublishedEnvelope(p, { ...expected, source: SOURCE })
}

/** The error `app.ready()` rejects with, or undefined when it resolves. */
async function readyError (app: FastifyInstance): Promise<unknown> {
  try {
    await app.ready()
  } catch (err) {
    return err
  }
  return undefined
}

describe('Fastify plugin', function () {
  const apps: FastifyInstance[] = []
  const instances: Messaging[] = []

  function app (): FastifyInstance {
    const a = Fastify({ logger: false })
    apps.push(a)
    return a
  }

  function messaging (extra: MessagingOptions = {}): Messaging {
    const m = createMessaging({ ...memory, ...extra })
    instances.push(m)
    return m
  }

  afterEach(async function () {
    for (const a of apps.splice(0)) await a.close()
    for (const m of instances.splice(0)) await m.close()
  })

  describe('publishing from a route', function () {
    it('a 2xx reply publishes the reply body as an event, with the envelope, headers, key and topic', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', { config: { event: { name: 'user.created', topic, keyField: 'id' } } }, async (req, reply) => {
        reply.code(201)
        return { id: 42, email: 'user@example.com' }
      })

      const res = await a.inject({ method: 'POST', url: '/users', payload: { email: 'user@example.com' } })

      expect(res.statusCode).to.equal(201)
      expect(res.json()).to.deep.equal({ id: 42, email: 'user@example.com' })
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'user.created', data: { id: 42, email: 'user@example.com' }, key: '42', topic })
    })

    it('publishes over real HTTP on a listening server', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.put('/orders/:id', { config: { event: { name: 'order.updated', topic, keyField: 'orderId' } } },
        async (req: FastifyRequest<{ Params: { id: string } }>) => ({ orderId: req.params.id, status: 'paid' }))
      await a.listen({ port: 0, host: '127.0.0.1' })

      const res = await request(a.server).put('/orders/o-7').send({ status: 'paid' })

      expect(res.status).to.equal(200)
      expect(res.body).to.deep.equal({ orderId: 'o-7', status: 'paid' })
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'order.updated', data: { orderId: 'o-7', status: 'paid' }, key: 'o-7', topic })
    })

    it('the 2xx reply is sent only once the broker has acknowledged the event', async function () {
      const topic = randomUUID()
      // The producer holds each batch for 300 ms: a reply that did not wait for the
      // acknowledgement would arrive before the event is in the broker.
      const m = messaging({ linger: 300 })
      const a = app()
      await a.register(herald, { messaging: m })
      a.post('/slow', { config: { event: { name: 'slow.done', topic } } }, async () => ({ ok: true }))
      await a.ready()

      const started = Date.now()
      const res = await a.inject({ method: 'POST', url: '/slow' })

      expect(published(topic), 'events in the broker when the reply arrived').to.have.length(1)
      expect(res.statusCode).to.equal(200)
      expect(Date.now() - started).to.be.at.least(250)
    })

    it('uses the messaging defaultTopic and no key when the route gives neither', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, { ...memory, defaultTopic: topic })
      a.post('/things', { config: { event: { name: 'thing.made' } } }, async () => ({ id: 1 }))

      await a.inject({ method: 'POST', url: '/things' })

      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'thing.made', data: { id: 1 }, key: undefined, topic })
    })

    it('a 4xx reply publishes nothing and is sent as the handler made it', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', { config: { event: { name: 'user.created', topic } } }, async (req, reply) => {
        return await reply.code(409).send({ error: 'email taken' })
      })

      const res = await a.inject({ method: 'POST', url: '/users' })

      expect(res.statusCode).to.equal(409)
      expect(res.json()).to.deep.equal({ error: 'email taken' })
      expect(published(topic)).to.have.length(0)
    })

    it('a handler that throws (5xx) publishes nothing', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', { config: { event: { name: 'user.created', topic } } }, async () => {
        throw new Error('database down')
      })

      const res = await a.inject({ method: 'POST', url: '/users' })

      expect(res.statusCode).to.equal(500)
      expect(published(topic)).to.have.length(0)
    })

    it('a route with an array of events publishes every one of them before replying', async function () {
      const users = randomUUID()
      const audit = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', {
        config: {
          event: [
            { name: 'user.created', topic: users, keyField: 'id' },
            { name: 'audit.recorded', topic: audit, includeResult: false },
            { name: 'user.welcome', topic: users, keyField: 'id', data: (result: { email: string }) => ({ to: result.email }) }
          ]
        }
      }, async () => ({ id: 5, email: 'five@example.com' }))

      const res = await a.inject({ method: 'POST', url: '/users' })

      expect(res.statusCode).to.equal(200)
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
      const a = app()
      await a.register(herald, memory)
      a.post('/sessions', { config: { event: { name: 'session.opened', topic, keyField: 'userId', includeResult: false } } },
        async () => ({ userId: 9, token: 'secret-token' }))

      await a.inject({ method: 'POST', url: '/sessions' })

      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'session.opened', data: {}, key: '9', topic })
    })

    it('data() receives the result and the Fastify request, and what it returns is published', async function () {
      const topic = randomUUID()
      const seen: Array<{ result: unknown, request: FastifyRequest }> = []
      const a = app()
      await a.register(herald, memory)
      a.post('/users', {
        config: {
          event: {
            name: 'user.created',
            topic,
            keyField: 'id',
            data: (result: { id: number }, req: FastifyRequest) => {
              seen.push({ result, request: req })
              return { id: result.id, tenant: req.headers['x-tenant'] }
            }
          }
        }
      }, async () => ({ id: 3, email: 'three@example.com', passwordHash: 'x' }))

      const res = await a.inject({ method: 'POST', url: '/users', headers: { 'x-tenant': 'acme' } })

      expect(res.statusCode).to.equal(200)
      expect(seen).to.have.length(1)
      expect(seen[0]!.result).to.deep.equal({ id: 3, email: 'three@example.com', passwordHash: 'x' })
      expect(seen[0]!.request.routeOptions.url).to.equal('/users')
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'user.created', data: { id: 3, tenant: 'acme' }, key: '3', topic })
    })

    it('publishes the body as the client receives it: fields a response schema drops are not in the event', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', {
        schema: { response: { 201: { type: 'object', properties: { id: { type: 'integer' }, email: { type: 'string' } } } } },
        config: { event: { name: 'user.created', topic, keyField: 'id' } }
      }, async (req, reply) => {
        reply.code(201)
        return { id: 8, email: 'eight@example.com', passwordHash: 'must-not-leak' }
      })

      const res = await a.inject({ method: 'POST', url: '/users' })

      expect(res.json()).to.deep.equal({ id: 8, email: 'eight@example.com' })
      const events = published(topic)
      expect(events).to.have.length(1)
      expectEnvelope(events[0]!, { name: 'user.created', data: { id: 8, email: 'eight@example.com' }, key: '8', topic })
    })

    it('the event data is the serialized body byte for byte, as the client received it (big integers, number spellings, spacing kept)', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      // A serializer that writes what JSON.parse + JSON.stringify would not give back.
      const text = '{"id":12345678901234567890, "price":1.50,"tags":[ ]}'
      a.post('/orders', { config: { event: { name: 'order.created', topic } } }, async (req, reply) => {
        reply.code(201).type('application/json').serializer(() => text)
        return { id: 1 }
      })

      const res = await a.inject({ method: 'POST', url: '/orders' })

      expect(res.statusCode, res.body).to.equal(201)
      expect(res.body).to.equal(text)
      const [entry] = published(topic)
      const wire = sharedMemoryStore().entries(topic)[0]!.value.toString('utf8')
      expect(wire).to.include(`"data":${text},"timestamp":`)
      expect(entry!.event.name).to.equal('order.created')
    })

    it('with a keyField, the body is parsed once for the key and the data is still the serialized text', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/users', { config: { event: { name: 'user.created', topic, keyField: 'id' } } }, async (req, reply) => {
        reply.code(201).type('application/json').serializer((v: unknown) => JSON.stringify(v, null, 1))
        return { id: 7, email: 'seven@example.com' }
      })

      const res = await a.inject({ method: 'POST', url: '/users' })

      expect(res.statusCode).to.equal(201)
      const wire = sharedMemoryStore().entries(topic)[0]!.value.toString('utf8')
      expect(wire).to.include(`"data":${res.body},`)
      expectEnvelope(published(topic)[0]!, { name: 'user.created', data: { id: 7, email: 'seven@example.com' }, key: '7', topic })
    })

    it('a text reply is published as the text', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.post('/ping', { config: { event: { name: 'pinged', topic } } }, async () => 'pong')

      const res = await a.inject({ method: 'POST', url: '/ping' })

      expect(res.body).to.equal('pong')
      expect(published(topic).map(p => p.event.data)).to.deep.equal(['pong'])
    })

    it('a HEAD request to a GET route with an event publishes nothing', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, memory)
      a.get('/report', { config: { event: { name: 'report.viewed', topic } } }, async () => ({ rows: 1 }))

      const head = await a.inject({ method: 'HEAD', url: '/report' })
      expect(head.statusCode).to.equal(200)
      expect(published(topic)).to.have.length(0)

      await a.inject({ method: 'GET', url: '/report' })
      expect(published(topic)).to.have.length(1)
    })

    it('routes without config.event publish nothing and are untouched', async function () {
      const topic = randomUUID()
      const a = app()
      await a.register(herald, { ...memory, defaultTopic: topic })
      a.post('/plain', async (req, reply) => { reply.code(201); return { ok: true } })

      const res = await a.inject({ method: 'POST', url: '/plain' })

      expect(res.statusCode).to.equal(201)
      expect(res.json()).to.deep.equal({ ok: true })
      expect(published(topic)).to.have.length(0)
    })

    it('a route declared before the plugin finished registering still publishes its event', async function () {
      const topic = randomUUID()
      const a = app()
      void a.register(herald, memory)
      a.post('/early', { config: { event: { name: 'early.bird', topic } } }, async () => ({ id: 1 }))
      await a.ready()

      const res = await a.inject({ method: 'POST', url: '/early' })

      expect(res.statusCode).to.equal(200)
      expect(published(topic)).to.have.length(1)
    })
    it('a route declared before the plugin was ready, with a bad config, answers 500 instead of a 2xx without its event', async function () {
      const topic = randomUUID()
      const a = app()
      void a.register(herald, { ...memory, defaultTopic: topic })
      a.post('/early', { config: { event: { nme: 'typo' } as never } }, async () => ({ id: 1 }))
      await a.ready()

      const res = await a.inject({ method: 'POST', url: '/early' })

      expect(res.statusCode).to.equal(500)
      expect(res.json()).to.not.have.property('id')
      expect(published(topic)).to.have.length(0)
    })
  })

  describe('route config is checked when the route is added', function () {
    const cases: Array<{ what: string, event: unknown, message: RegExp }> = [
      { what: 'a missing name', event: { topic: 'x' }, message: /route POST \/bad config\.event\.name: is required/ },
      { what: 'an unknown option', event: { name: 'x', keyfield: 'id' }, message: /route POST \/bad config\.event: unknown option "keyfield"/ },
      { what: 'a wrong type', event: { name: 'x', includeResult: 'yes' }, message: /route POST \/bad config\.event\.includeResult: must be true or false/ },
      { what: 'a bad entry in an array', event: [{ name: 'ok' }, { name: 'x', data: 'nope' }], message: /route POST \/bad config\.event\[1\]\.data: must be a function/ }
    ]
    for (const c of cases) {
      it(`${c.what} fails app.ready() with a ConfigError naming the route and the option`, async function () {
        const a = app()
        await a.register(herald, memory)
        // Routes declared in a plugin (the usual layout): the error rejects app.ready().
        a.register(async (routes) => {
          routes.post('/bad', { config: { event: c.event as never } }, async () => ({}))
        })

        const thrown = await readyError(a)

        expect(thrown).to.be.instanceOf(ConfigError)
        expect((thrown as Error).message).to.match(c.message)
      })
    }

    it('a bad config on a route declared at the top level throws where the route is declared', async function () {
      const a = app()
      await a.register(herald, memory)

      expect(() => a.post('/bad', { config: { event: { name: 'x', nope: 1 } as never } }, async () => ({})))
        .to.throw(ConfigError, 'route POST /bad config.event: unknown option "nope"')
    })

    it('the route named in the error includes the prefix of its scope', async function () {
      const a = app()
      await a.register(herald, memory)
      a.register(async (child) => {
        child.put('/nested/:id', { config: { event: { name: '' } } }, async () => ({}))
      }, { prefix: '/v1' })

      const thrown = await readyError(a)

      expect(thrown).to.be.instanceOf(ConfigError)
      expect((thrown as Error).message).to.contain('route PUT /v1/nested/:id config.event.name: is required')
    })

    it('app.listen() fails too, and the server does not start', async function () {
      const a = app()
      await a.register(herald, memory)
      a.register(async (routes) => {
        routes.post('/bad', { config: { event: { topic: 'no-name' } as never } }, async () => ({}))
      })

      let thrown: unknown
      try {
        await a.listen({ port: 0, host: '127.0.0.1' })
      } catch (err) {
        thrown = err
      }

      expect(thrown).to.be.instanceOf(ConfigError)
      expect(a.server.listening).to.equal(false)
    })
  })

  describe('when the event cannot be published', function () {
    /** An app whose logger lines are kept, with herald on `options`. */
    async function loggingApp (options: Parameters<typeof herald>[1]): Promise<{ a: FastifyInstance, lines: Array<Record<string, unknown>> }> {
      const lines: Array<Record<string, unknown>> = []
      const a = Fastify({ logger: { level: 'error', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
      apps.push(a)
      await a.register(herald, options)
      return { a, lines }
    }

    describe('the broker refuses it (RabbitMQ nacks the topic)', function () {
      let rabbit: Awaited<ReturnType<typeof rabbitRefusingTopic>>
      before(async function () {
        if (!brokerSelected('rabbitmq')) this.skip()
        rabbit = await rabbitRefusingTopic()
      })
      after(async function () { await rabbit?.cleanup() })

      it('the client gets a 503 naming the event, never the 2xx', async function () {
        const a = app()
        await a.register(herald, { ...rabbit.options, logger: false, source: SOURCE })
        a.post('/users', { config: { event: { name: 'user.created', topic: rabbit.refused, keyField: 'id' } } }, async (req, reply) => {
          reply.code(201)
          return { id: 1 }
        })

        const res = await a.inject({ method: 'POST', url: '/users' })

        expect(res.statusCode).to.equal(503)
        expect(res.headers['content-type']).to.equal('application/json; charset=utf-8')
        const body = res.json()
        expect(body).to.include({ statusCode: 503, error: 'Service Unavailable', event: 'user.created' })
        expect(body.message).to.contain('"user.created"').and.to.match(/retry/i)
        expect(body.events).to.deep.equal([{ name: 'user.created', topic: rabbit.refused, published: false }])
        expect(body).to.not.have.property('id')
      })

      it('logs the failure with the route, the event name and its topic', async function () {
        const { a, lines } = await loggingApp({ ...rabbit.options, logger: false, source: SOURCE })
        a.post('/users', { config: { event: { name: 'user.created', topic: rabbit.refused } } }, async () => ({ id: 1 }))

        await a.inject({ method: 'POST', url: '/users' })

        const line = lines.find(l => l.event === 'user.created')
        expect(line, JSON.stringify(lines)).to.not.equal(undefined)
        expect(line!.level).to.equal(50)
        expect(line!.topic).to.equal(rabbit.refused)
        expect(line!.route).to.equal('POST /users')
      })

      it('a route with two events where the second is refused answers 503 naming which one was published', async function () {
        const a = app()
        await a.register(herald, { ...rabbit.options, logger: false, source: SOURCE })
        a.post('/orders', {
          config: { event: [{ name: 'order.placed', topic: rabbit.good }, { name: 'order.audited', topic: rabbit.refused }] }
        }, async () => ({ id: 'o-1' }))

        const res = await a.inject({ method: 'POST', url: '/orders' })

        expect(res.statusCode).to.equal(503)
        const body = res.json()
        expect(body).to.include({ statusCode: 503, error: 'Service Unavailable', event: 'order.audited' })
        expect(body.events).to.deep.equal([
          { name: 'order.placed', topic: rabbit.good, published: true },
          { name: 'order.audited', topic: rabbit.refused, published: false }
        ])
        expect(body.message).to.contain('"order.audited" could not be published').and.to.contain('"order.placed" was published')
        expect(await rabbitQueueDepth(rabbit.good)).to.equal(1)
      })
    })

    describe('a bug in the reply or its event is a 500, and nothing is published', function () {
      it('a data() mapper that throws gives a 500, and the route\'s other events are not published either', async function () {
        const topic = randomUUID()
        const { a, lines } = await loggingApp(memory)
        a.post('/users', {
          config: { event: [{ name: 'user.created', topic }, { name: 'user.welcome', topic, data: () => { throw new Error('mapper bug') } }] }
        }, async () => ({ id: 1 }))

        const res = await a.inject({ method: 'POST', url: '/users' })

        expect(res.statusCode).to.equal(500)
        expect(res.json()).to.include({ statusCode: 500, error: 'Internal Server Error' })
        expect(res.json()).to.not.have.property('id')
        expect(published(topic)).to.have.length(0)
        const line = lines.find(l => l.event === 'user.welcome')
        expect(line, JSON.stringify(lines)).to.not.equal(undefined)
        expect(line!.route).to.equal('POST /users')
        expect(line!.reason).to.contain('mapper bug')
      })

      it('data holding a BigInt (not JSON) gives a 500', async function () {
        const topic = randomUUID()
        const a = app()
        await a.register(herald, memory)
        a.post('/counters', { config: { event: { name: 'counter.bumped', topic, data: () => ({ n: 10n }) } } }, async () => ({ ok: true }))

        const res = await a.inject({ method: 'POST', url: '/counters' })

        expect(res.statusCode).to.equal(500)
        expect(res.json().message).to.contain('counter.bumped').and.to.contain('BigInt')
        expect(published(topic)).to.have.length(0)
      })

      it('an event over maxMessageBytes gives a 500, logged with the route and the event', async function () {
        const topic = randomUUID()
        const { a, lines } = await loggingApp({ ...memory, maxMessageBytes: 1024 })
        a.post('/files/:id', { config: { event: { name: 'file.stored', topic } } }, async () => ({ content: 'x'.repeat(2000) }))

        const res = await a.inject({ method: 'POST', url: '/files/7' })

        expect(res.statusCode).to.equal(500)
        expect(res.json()).to.include({ statusCode: 500, error: 'Internal Server Error' })
        expect(published(topic)).to.have.length(0)
        const line = lines.find(l => l.event === 'file.stored')
        expect(line, JSON.stringify(lines)).to.not.equal(undefined)
        expect(line!.route).to.equal('POST /files/:id')
        expect(line!.code).to.equal('HERALD_MESSAGE_TOO_LARGE')
      })

      it('a reply without the keyField gives a 500 instead of an event with no key', async function () {
        const topic = randomUUID()
        const a = app()
        await a.register(herald, memory)
        a.post('/users', { config: { event: { name: 'user.created', topic, keyField: 'id' } } }, async () => ({ email: 'no-id@example.com' }))

        const res = await a.inject({ method: 'POST', url: '/users' })

        expect(res.statusCode).to.equal(500)
        expect(res.json().message).to.contain('keyField "id"')
        expect(published(topic)).to.have.length(0)
      })

      it('a messaging instance closed while the app still serves is a 500 (a retry cannot help), not a 503', async function () {
        const topic = randomUUID()
        const m = messaging()
        const a = app()
        await a.register(herald, { messaging: m })
        a.post('/users', { config: { event: { name: 'user.created', topic } } }, async () => ({ id: 1 }))
        await a.ready()
        await m.close()

        const res = await a.inject({ method: 'POST', url: '/users' })

        expect(res.statusCode).to.equal(500)
        expect(res.json().message).to.contain('"user.created"').and.to.contain('closed')
        expect(published(topic)).to.have.length(0)
      })

      it('the 500 goes through the app\'s error handler, like any other error', async function () {
        const topic = randomUUID()
        const a = app()
        await a.register(herald, memory)
        a.setErrorHandler(async (err, req, reply) => await reply.code(500).send({ oops: (err as { code?: string }).code }))
        a.post('/users', { config: { event: { name: 'user.created', topic, data: () => { throw new Error('mapper bug') } } } }, async () => ({ id: 1 }))

        const res = await a.inject({ method: 'POST', url: '/users' })

        expect(res.statusCode).to.equal(500)
        expect(res.json()).to.deep.equal({ oops: 'HERALD_EVENT_MAPPER' })
      })
    })

    const redisAdapter = new URL('../lib/brokers/redis/index.ts', import.meta.url)
    it('an unreachable broker fails app.ready() at start-up, with the address and without the password', async function () {
      if (!existsSync(redisAdapter)) this.skip()
      this.timeout(15_000)
      const a = Fastify({ logger: false, pluginTimeout: 0 })
      apps.push(a)
      let thrown: unknown
      try {
        await a.register(herald, { broker: 'redis', url: 'redis://app:s3cret@127.0.0.1:1', logger: false, publishTimeout: 300 })
        await a.ready()
      } catch (err) {
        thrown = err
      }
      expect(thrown).to.be.instanceOf(Error)
      expect((thrown as Error).message).to.contain('127.0.0.1:1')
      expect((thrown as Error).message).to.not.contain('s3cret')
    })
  })

  describe('plugin lifecycle', function () {
    it('decorates app.messaging with the instance it created from the options', async function () {
      const a = app()
      await a.register(herald, { ...memory, defaultTopic: 'my-events' })

      expect(a.messaging).to.be.instanceOf(Messaging)
      expect(a.messaging.options.source).to.equal(SOURCE)
      expect(a.messaging.options.defaultTopic).to.equal('my-events')
    })

    it('decorates app.messaging with the instance passed in', async function () {
      const m = messaging()
      const a = app()
      await a.register(heraldFastify, { messaging: m })

      expect(a.messaging).to.equal(m)
    })

    it('bad messaging options fail app.ready() with a ConfigError naming the option', async function () {
      const a = app()
      a.register(herald, { broker: 'nats' as never, logger: false })
      const thrown = await readyError(a)
      expect(thrown).to.be.instanceOf(ConfigError)
      expect((thrown as ConfigError).option).to.equal('broker')
      expect((thrown as Error).message).to.contain('"nats"')
    })

    it('messaging options next to `messaging` fail app.ready() instead of being ignored', async function () {
      const a = app()
      a.register(herald, { messaging: messaging(), broker: 'kafka' })
      const thrown = await readyError(a)
      expect(thrown).to.be.instanceOf(ConfigError)
      expect((thrown as Error).message).to.match(/^broker: cannot be given with `messaging`/)
    })

    it('a messaging instance that cannot connect fails app.ready()', async function () {
      const m = messaging()
      await m.close()
      const a = app()
      a.register(herald, { messaging: m })
      const thrown = await readyError(a)
      expect(thrown).to.be.instanceOf(Error)
      expect((thrown as Error).message).to.contain('closed')
    })

    it('app.close() closes the messaging the plugin created', async function () {
      const a = app()
      await a.register(herald, memory)
      await a.ready()
      const m = a.messaging
      await m.publishEvent('before.close', {}, { topic: randomUUID() })

      await a.close()

      let thrown: unknown
      await m.publishEvent('after.close', {}, { topic: randomUUID() }).catch((err: unknown) => { thrown = err })
      expect(thrown).to.be.instanceOf(PublishError)
    })

    it('app.close() leaves a messaging passed in open', async function () {
      const topic = randomUUID()
      const m = messaging()
      const a = app()
      await a.register(herald, { messaging: m })
      await a.ready()

      await a.close()

      await m.publishEvent('still.open', { ok: true }, { topic })
      expect(published(topic)).to.have.length(1)
    })

    it('app.close() closes a messaging passed in with closeMessaging: true', async function () {
      const m = messaging()
      const a = app()
      await a.register(herald, { messaging: m, closeMessaging: true })
      await a.ready()

      await a.close()

      let thrown: unknown
      await m.publishEvent('after.close', {}, { topic: randomUUID() }).catch((err: unknown) => { thrown = err })
      expect(thrown).to.be.instanceOf(PublishError)
    })

    it('registering the plugin twice fails app.ready() with a message saying it is already registered', async function () {
      const a = app()
      a.register(herald, memory)
      a.register(herald, memory)
      const thrown = await readyError(a)
      expect(thrown).to.be.instanceOf(Error)
      expect((thrown as Error).message).to.match(/herald is already registered/)
    })

    it('registering the plugin again in a child scope fails too', async function () {
      const a = app()
      a.register(herald, memory)
      a.register(async (child) => { await child.register(herald, memory) })
      const thrown = await readyError(a)
      expect(thrown).to.be.instanceOf(Error)
      expect((thrown as Error).message).to.match(/herald is already registered/)
    })
  })
})
