// The fault harness's service: a real Fastify app with the herald plugin (and its outbox,
// when the library has one), one route whose 2xx reply is the event `order.placed`. Started
// by run.ts as `node --import tsx scripts/faults/service.ts`, settings in
// HERALD_FAULTS_SETTINGS; it tells the harness its port over IPC once it listens.
import Fastify from 'fastify'
import type { MessagingOptions } from '../../lib/index.js'
import herald from '../../plugins/fastify.js'
import { brokerTuning, SETTINGS_ENV, type ChildSettings } from './common.js'

const settings = JSON.parse(process.env[SETTINGS_ENV] ?? '{}') as ChildSettings

const options: MessagingOptions = {
  broker: settings.broker,
  ...settings.connection,
  ...brokerTuning(settings.broker),
  source: 'faults-service',
  publishTimeout: settings.publishTimeout ?? 3_000
}
// `outbox` is passed only when the harness found the library's outbox (run.ts decides).
// The spool survives the process: a restarted service relays what the previous one stored.
if (settings.outbox !== undefined) Object.assign(options, { outbox: settings.outbox })

// Errors only (a 503's reason), as JSON lines in the service's log file.
const app = Fastify({ logger: { level: 'error' }, forceCloseConnections: true })
await app.register(herald, options)

app.post('/orders', {
  schema: {
    body: {
      type: 'object',
      required: ['requestId', 'n'],
      properties: { requestId: { type: 'string', minLength: 1 }, n: { type: 'integer' } }
    }
  },
  config: { event: { name: 'order.placed', topic: settings.topic, keyField: 'requestId' } }
}, async (request, reply) => {
  const { requestId, n } = request.body as { requestId: string, n: number }
  reply.code(201)
  return { requestId, n }
})

// For the harness: what the outbox holds now (pending messages, undeliverable ones).
app.get('/faults/outbox', async () => ({ outbox: (app.messaging as { outbox?: unknown }).outbox ?? null }))

// A restarted service takes its predecessor's port, so the load generator keeps its address.
await app.listen({ host: '127.0.0.1', port: settings.port ?? 0 })
const address = app.server.address()
process.send?.({ ready: true, port: typeof address === 'object' && address !== null ? address.port : 0 })

let stopping = false
const stop = async (): Promise<void> => {
  if (stopping) return
  stopping = true
  const force = setTimeout(() => process.exit(3), 20_000)
  force.unref()
  try {
    await app.close()
  } finally {
    process.exit(0)
  }
}
process.once('SIGTERM', () => { void stop() })
process.once('SIGINT', () => { void stop() })
process.once('disconnect', () => { void stop() })
