/**
 * Type-level tests of the Fastify plugin and the Express middleware, checked by
 * `npm run typecheck` (`tsc -p tsconfig.json`). Nothing here runs: mocha only loads
 * `*.test.ts`, and the checks sit in functions that are never called.
 */
import Fastify, { type FastifyRequest } from 'fastify'
import express, { type Request } from 'express'
import herald, { heraldFastify, type HeraldFastifyOptions, type RouteEventConfig } from '../../plugins/fastify.js'
import { emit, herald as heraldExpress, type HeraldMiddleware } from '../../plugins/express.js'
import { createMessaging, type Messaging } from '../../lib/messaging.js'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (): T | undefined { return undefined }

export async function fastifyPluginTypes (): Promise<void> {
  const app = Fastify()
  await app.register(herald, { broker: 'kafka', bootstrapServers: 'localhost:9092', source: 'users-service' })
  await app.register(heraldFastify, { messaging: createMessaging(), closeMessaging: true })
  // @ts-expect-error: not a broker
  await app.register(herald, { broker: 'nats' })
  // @ts-expect-error: closeMessaging is a boolean
  await app.register(herald, { closeMessaging: 'yes' })
  const options: HeraldFastifyOptions = { defaultTopic: 'events', publishTimeout: 500 }
  await app.register(herald, options)

  expectType<Equals<typeof app.messaging, Messaging>>()

  // A valid route config: one event, or an array, with every option.
  app.post('/users', { config: { event: { name: 'user.created', topic: 'user-events', keyField: 'id', includeResult: true } } }, async () => ({ id: 1 }))
  app.post('/orders', {
    config: {
      event: [
        { name: 'order.placed', topic: 'order-events', keyField: 'id' },
        {
          name: 'order.analytics',
          data: (order: { id: number, total: number }, request) => {
            expectType<Equals<typeof request, FastifyRequest>>()
            return { id: order.id, total: order.total, ip: request.ip }
          }
        }
      ]
    }
  }, async () => ({ id: 2, total: 10 }))
  app.route({ method: 'POST', url: '/sessions', config: { event: { name: 'session.opened', includeResult: false } }, handler: async () => ({}) })

  // @ts-expect-error: the event name is required
  app.post('/bad-1', { config: { event: { topic: 'user-events' } } }, async () => ({}))
  // @ts-expect-error: the event name is required, in every event of an array
  app.post('/bad-2', { config: { event: [{ name: 'x' }, { topic: 'y' }] } }, async () => ({}))
  // @ts-expect-error: includeResult is a boolean
  app.post('/bad-3', { config: { event: { name: 'x', includeResult: 'no' } } }, async () => ({}))
  // @ts-expect-error: data is a function
  app.post('/bad-4', { config: { event: { name: 'x', data: 'nope' } } }, async () => ({}))

  // An unknown option is rejected wherever the config is checked against its type: a
  // route with its generics given, or a value typed as RouteEventConfig. (When a route's
  // generics are all inferred, Fastify infers the route's own config type from the literal
  // and merges it in, so an extra key type-checks there; the onRoute check then fails
  // app.ready() naming it, see test/fastify.test.ts.)
  // @ts-expect-error: an unknown option in config.event
  app.post<{ Body: { email: string } }>('/bad-5', { config: { event: { name: 'x', nope: 1 } } }, async () => ({}))
  // @ts-expect-error: an unknown option in one event of an array
  app.post<{ Body: { email: string } }>('/bad-6', { config: { event: [{ name: 'x' }, { name: 'y', keyfield: 'id' }] } }, async () => ({}))
  // @ts-expect-error: an unknown option
  const typed: RouteEventConfig = { name: 'x', nope: 1 }
  void typed

  // The route's config is typed on the request too.
  app.get('/config', async (request) => {
    expectType<Equals<typeof request.routeOptions.config.event, RouteEventConfig | RouteEventConfig[] | undefined>>()
    return {}
  })
}

export function expressMiddlewareTypes (): void {
  const app = express()
  const middleware = heraldExpress({ broker: 'redis', url: 'redis://localhost:6379' })
  app.use(middleware)
  expectType<Equals<typeof middleware, HeraldMiddleware>>()
  expectType<Equals<typeof middleware.messaging, Messaging>>()
  const closing: Promise<void> = middleware.close()
  void closing
  heraldExpress({ messaging: createMessaging(), closeMessaging: false })
  // @ts-expect-error: not a broker
  heraldExpress({ broker: 'nats' })

  app.post('/users', emit({ name: 'user.created', topic: 'user-events', keyField: 'id' }), async (req, res) => {
    expectType<Equals<typeof req.messaging, Messaging>>()
    res.status(201).json({ id: 1 })
  })
  app.post('/orders', emit([
    { name: 'order.placed', keyField: 'id' },
    {
      name: 'order.analytics',
      data: (order: { id: number }, req) => {
        expectType<Equals<typeof req, Request>>()
        return { id: order.id }
      }
    }
  ]), (req, res) => { res.json({ id: 2 }) })

  // @ts-expect-error: an unknown option
  emit({ name: 'x', nope: 1 })
  // @ts-expect-error: the event name is required
  emit({ topic: 'user-events' })
}
