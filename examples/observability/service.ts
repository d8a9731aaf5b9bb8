// The HTTP service: POST /users emits user.created; /metrics serves Herald's metrics.
// Run: REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/observability/service.ts
import './otel.js'
import { context, SpanKind, trace } from '@opentelemetry/api'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import herald from '../../plugins/fastify.js'
import { heraldMetrics } from '../../plugins/metrics.js'

const registry = new Registry()
heraldMetrics({ registry, labels: { service: 'users-api' } })

const app = Fastify()
// Stands in for an HTTP instrumentation (@opentelemetry/instrumentation-http, @fastify/otel).
app.addHook('onRequest', (request, reply, done) => {
  const span = trace.getTracer('http').startSpan(`${request.method} ${request.url}`, { kind: SpanKind.SERVER })
  reply.raw.on('finish', () => span.end())
  context.with(trace.setSpan(context.active(), span), done)
})
await app.register(herald, { source: 'users-api' })
app.post('/users', { config: { event: { name: 'user.created', topic: 'user-events', keyField: 'id' } } }, async () => ({ id: 1, email: 'user@example.com' }))
app.get('/metrics', async (_request, reply) => await reply.type(registry.contentType).send(await registry.metrics()))
await app.listen({ port: 3000, host: '127.0.0.1' })
