import Fastify, { type FastifyInstance } from 'fastify'
import herald from 'herald/fastify'
import type { Messaging, MessagingOptions } from 'herald'

let nextUserId = 1
let nextOrderId = 100

/**
 * The service: register the plugin, add `config.event` to the routes that emit. A route
 * answers 2xx only once the broker has its event; if the event cannot be published the
 * client gets a 503 naming it.
 */
export async function buildApp (options: { messaging?: Messaging } & MessagingOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(herald, options)

  app.post('/users', {
    schema: {
      body: {
        type: 'object',
        required: ['email', 'name'],
        properties: { email: { type: 'string', minLength: 3 }, name: { type: 'string', minLength: 1 } }
      }
    },
    config: { event: { name: 'user.created', topic: 'user-events', keyField: 'id' } }
  }, async (request, reply) => {
    const { email, name } = request.body as { email: string, name: string }
    reply.code(201)
    return { id: nextUserId++, email, name }
  })

  app.post('/orders', {
    schema: {
      body: {
        type: 'object',
        required: ['userId', 'total', 'card'],
        properties: { userId: { type: 'number' }, total: { type: 'number', minimum: 0 }, card: { type: 'string' } }
      }
    },
    // One route, two events: the order for billing, and a lighter one for analytics.
    config: {
      event: [
        { name: 'order.placed', topic: 'order-events', keyField: 'id' },
        { name: 'order.analytics', topic: 'analytics', data: (order: { id: number, total: number }) => ({ id: order.id, total: order.total }) }
      ]
    }
  }, async (request, reply) => {
    const { userId, total, card } = request.body as { userId: number, total: number, card: string }
    reply.code(201)
    return { id: nextOrderId++, userId, total, card }
  })

  app.get('/health', async (_request, reply) => {
    const health = await app.messaging.health()
    reply.code(health.ok ? 200 : 503)
    return health
  })

  return app
}
