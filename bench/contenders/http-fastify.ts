// A Fastify service with one POST route: bare, with Herald's `config.event`, or naive (awaits
// one raw send per request). Prints BENCH_READY with its port; SIGTERM closes it.
import Fastify from 'fastify'
import herald from '../../dist/plugins/fastify.js'
import { answer, ready, type Task } from '../common.js'
import { heraldOptions } from './herald.js'
import { countMemoryTopic, EVENT, naiveSender } from './http-common.js'

export async function run (task: Task): Promise<void> {
  const app = Fastify({ logger: false })
  let requestId = 0
  if (task.route === 'event') {
    await app.register(herald, heraldOptions(task.broker))
    app.post('/orders', { config: { event: { ...EVENT, topic: task.topic } } }, async (request, reply) => {
      reply.code(201)
      return { ...(request.body as object), requestId: ++requestId }
    })
    app.get('/bench/count', async (request) => ({ count: await countMemoryTopic(app.messaging, task.topic, Number((request.query as { expect?: string }).expect)) }))
  } else if (task.route === 'naive') {
    const send = await naiveSender(task.broker, task.topic)
    app.post('/orders', async (request, reply) => {
      const data = { ...(request.body as object), requestId: ++requestId }
      await send(data)
      reply.code(201)
      return data
    })
  } else {
    app.post('/orders', async (request, reply) => {
      reply.code(201)
      return { ...(request.body as object), requestId: ++requestId }
    })
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  ready({ port: typeof address === 'object' && address !== null ? address.port : 0 })
  await new Promise<void>(resolve => process.once('SIGTERM', () => resolve()))
  await app.close()
  answer({ requests: requestId })
}
