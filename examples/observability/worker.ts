// The worker: handles user.created inside the consumer span; serves /livez, /readyz and
// /metrics on port 9464 (503 on /readyz from the first moment of SIGTERM while it drains).
// Run: REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/observability/worker.ts
import './otel.js'
import { trace } from '@opentelemetry/api'
import { configureMessaging, messageHandler, startConsumers } from '../../lib/index.js'

configureMessaging({ source: 'mailer' })
const sendWelcomeEmail = messageHandler({ topic: 'user-events', group: 'mailer' }, async (user: { email: string }, ctx) => {
  await trace.getTracer('mailer').startActiveSpan('send welcome email', async (span) => {
    ctx.logger.info({ email: user.email }, 'welcome email sent') // carries trace_id and span_id
    span.end()
  })
})
await startConsumers({ handlers: [sendWelcomeEmail], httpPort: 9464 })
