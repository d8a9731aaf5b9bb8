import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import request from 'supertest'
import herald from '../plugins/fastify.js'
import { herald as heraldExpress, healthRoutes } from '../plugins/express.js'
import { createMessaging, messageHandler, startConsumers, type Messaging } from '../lib/index.js'
import { ConfigError } from '../lib/errors.js'
import { eventually, randomName } from './helpers.js'

const memory = { broker: 'memory' as const, logger: false as const, source: 'health-test' }
// Nothing listens there: connections are refused at once.
const downRedis = { broker: 'redis' as const, url: 'redis://127.0.0.1:1', logger: false as const, source: 'health-test' }

describe('health routes', function () {
  this.timeout(30_000)
  const apps: FastifyInstance[] = []
  const instances: Messaging[] = []
  const dirs: string[] = []
  afterEach(async function () {
    for (const a of apps.splice(0)) await a.close()
    for (const m of instances.splice(0)) await m.close()
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })

  async function fastify (options: Record<string, unknown>): Promise<FastifyInstance> {
    const app = Fastify({ logger: false })
    apps.push(app)
    await app.register(herald, options)
    await app.ready()
    return app
  }

  describe('Fastify', function () {
    it('health: true serves /livez and /readyz: 200 while the broker answers', async function () {
      const app = await fastify({ ...memory, health: true })
      const live = await request(app.server).get('/livez')
      expect(live.status).to.equal(200)
      expect(live.body).to.deep.equal({ status: 'alive' })
      const ready = await request(app.server).get('/readyz')
      expect(ready.status).to.equal(200)
      expect(ready.body).to.include({ status: 'ready' })
    })

    it('the paths are configurable, and false leaves one out', async function () {
      const app = await fastify({ ...memory, health: { readyz: '/ready', livez: false } })
      expect((await request(app.server).get('/ready')).status).to.equal(200)
      expect((await request(app.server).get('/livez')).status).to.equal(404)
      expect((await request(app.server).get('/readyz')).status).to.equal(404)
    })

    it('without the option, no route is added', async function () {
      const app = await fastify({ ...memory })
      expect((await request(app.server).get('/readyz')).status).to.equal(404)
    })

    it('/readyz is 503 with a reason once the broker does not answer (messaging closed); /livez stays 200', async function () {
      const m = createMessaging(memory)
      instances.push(m)
      const app = await fastify({ messaging: m, health: true })
      await m.close()
      const ready = await request(app.server).get('/readyz')
      expect(ready.status).to.equal(503)
      expect(ready.body.status).to.equal('not ready')
      expect(ready.body.reasons.join(' ')).to.match(/the broker does not answer/)
      expect((await request(app.server).get('/livez')).status).to.equal(200)
    })

    it('a broker outage with an outbox that has room stays ready (sends go to the outbox)', async function () {
      const dir = mkdtempSync(join(tmpdir(), 'herald-health-'))
      dirs.push(dir)
      const app = await fastify({ ...downRedis, outbox: { dir }, health: true })
      const ready = await request(app.server).get('/readyz')
      expect(ready.status).to.equal(200)
      expect(ready.body).to.include({ status: 'ready' })
      expect(ready.body.broker.ok).to.equal(false)
    })

    it('/readyz is 503 while a runner started on the same messaging drains, ready again once it stopped', async function () {
      const m = createMessaging(memory)
      instances.push(m)
      const app = await fastify({ messaging: m, health: true })
      const topic = randomName()
      let running = false
      let unblock!: () => void
      const blocked = new Promise<void>(resolve => { unblock = resolve })
      const runner = await startConsumers({ messaging: m, signals: false, handlers: [messageHandler({ topic, group: randomName('g') }, async () => { running = true; await blocked })] })
      expect((await request(app.server).get('/readyz')).status).to.equal(200)
      await m.publishEvent('user.created', { id: 1 }, { topic })
      await eventually(() => running, 'the handler to run')
      const stopping = runner.stop()
      const ready = await request(app.server).get('/readyz')
      expect(ready.status).to.equal(503)
      expect(ready.body.reasons).to.deep.equal(['a consumer runner is draining'])
      expect((await request(app.server).get('/livez')).status).to.equal(200)
      unblock()
      await stopping
      expect((await request(app.server).get('/readyz')).status).to.equal(200)
    })

    it('an unknown key of health is refused, naming the nearest one', async function () {
      let error: unknown
      try {
        await fastify({ ...memory, health: { livz: '/live' } })
      } catch (err) { error = err }
      expect(error).to.be.instanceOf(ConfigError)
      expect(String(error)).to.match(/unknown option "health\.livz"; did you mean "health\.livez"/)
    })

    it('a path that does not start with "/" is refused', async function () {
      let error: unknown
      try {
        await fastify({ ...memory, health: { readyz: 'ready' } })
      } catch (err) { error = err }
      expect(error).to.be.instanceOf(ConfigError)
      expect(String(error)).to.match(/health\.readyz: must be a path starting with "\/"/)
    })
  })

  describe('Express', function () {
    it('herald({ health: true }) serves /livez and /readyz', async function () {
      const mw = heraldExpress({ ...memory, health: true })
      instances.push(mw.messaging)
      const app = express()
      app.use(mw)
      expect((await request(app).get('/livez')).body).to.deep.equal({ status: 'alive' })
      const ready = await request(app).get('/readyz')
      expect(ready.status).to.equal(200)
      expect(ready.body).to.include({ status: 'ready' })
    })

    it('healthRoutes(messaging) answers 503 with the reason while the broker does not answer', async function () {
      const m = createMessaging(downRedis)
      instances.push(m)
      const app = express()
      app.use(healthRoutes(m, { readyz: '/ready' }))
      const ready = await request(app).get('/ready')
      expect(ready.status).to.equal(503)
      expect(ready.body.status).to.equal('not ready')
      expect(ready.body.reasons[0]).to.match(/the broker does not answer/)
      expect((await request(app).get('/livez')).status).to.equal(200)
    })

    it('healthRoutes() refuses an unknown key, and herald() an unknown health key', function () {
      const m = createMessaging(memory)
      instances.push(m)
      expect(() => healthRoutes(m, { redyz: '/r' } as never)).to.throw(ConfigError, /unknown option "healthRoutes\.redyz"; did you mean "healthRoutes\.readyz"/)
      expect(() => heraldExpress({ ...memory, helth: true } as never)).to.throw(ConfigError, /unknown option "helth"; did you mean "health"/)
    })
  })
})
