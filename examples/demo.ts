// The demo: the Fastify service and the worker in one process, on the embedded broker (or
// the one named by MESSAGING_BROKER). It sends real HTTP requests and prints, one line per
// step, each request, each event as the broker has it, each handler run, the retry of a
// failed payment and the dead letter of a declined card. Exits 0 when all of it happened.
//
//   npm run demo                         # embedded broker, nothing to install
//   MESSAGING_BROKER=redis npm run demo  # or kafka, rabbitmq
import { configureMessaging, messageHandler, startConsumers, DLQ_HEADERS, type Logger } from 'herald'
import { buildApp } from './fastify-service/app.js'
import { startWorker } from './worker/worker.js'
import { fakePayments, logMailer, type Payments } from './worker/services.js'

const started = Date.now()
const line = (who: string, text: string): void => {
  const t = ((Date.now() - started) / 1000).toFixed(2).padStart(6)
  console.log(`${t}s  ${who.padEnd(8)} ${text}`)
}

// A logger that shows what handlers and Herald say, one readable line each.
function demoLogger (bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (obj: unknown, msg?: string): void => {
    const fields = { ...bindings, ...(typeof obj === 'object' && obj !== null ? obj as Record<string, unknown> : {}) }
    const text = typeof obj === 'string' ? obj : msg ?? ''
    if (level === 'debug' || fields.handler === undefined || fields.group === 'demo-tap') return
    const who = String(fields.group)
    if (text.startsWith('handler failed')) line(who, `✗ ${text}: ${String(fields.reason)}`)
    else if (text === 'message dead-lettered') line(who, `☠ dead-lettered to ${String(fields.deadLetter)}: ${String(fields.reason)}`)
    else line(who, `${level === 'warn' ? '!' : '✓'} ${text}`)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: (b) => demoLogger({ ...bindings, ...b }) }
}

const messaging = configureMessaging({ source: 'demo', logger: demoLogger() })
line('demo', `broker: ${messaging.options.broker} (${messaging.options.address})`)

// The payment gateway times out once, on the first order: billing retries it.
let gatewayCalls = 0
const flakyPayments: Payments = {
  async charge (orderId, amount, card) {
    if (++gatewayCalls === 1) throw new Error('payment gateway timed out')
    return await fakePayments.charge(orderId, amount, card)
  }
}

// A tap on the topics, to show each event as the broker has it.
const seen = { events: 0, deadLetters: 0 }
const tap = await startConsumers({
  messaging,
  signals: false,
  handlers: [
    messageHandler({ topic: ['user-events', 'order-events', 'analytics'], group: 'demo-tap' }, async (_m, ctx) => {
      // On a broker that keeps history, count only this run's events.
      if (Date.parse(ctx.event?.timestamp ?? '') < started) return
      seen.events++
      line('broker', `${ctx.event?.name ?? '?'} on ${ctx.topic} (key ${ctx.key ?? '-'}, id ${ctx.event?.id.slice(0, 8) ?? '-'})`)
    }),
    messageHandler({ topic: 'order-events.billing.dlq', group: 'demo-tap' }, async (_m, ctx) => {
      if (Date.parse(ctx.headers[DLQ_HEADERS.failedAt] ?? '') >= started) seen.deadLetters++
    })
  ]
})
const worker = await startWorker(messaging, { mailer: logMailer, payments: flakyPayments })
for (const c of worker.consumers) line('worker', `${c.name} consumes ${c.topics.join(', ')} in group ${c.group}`)

const app = await buildApp({ messaging })
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`

async function request (method: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  line('service', `${method} ${path} ${JSON.stringify(body)} → ${res.status} ${await res.text()}`)
}

await request('POST', '/users', { email: 'ada@example.com', name: 'Ada' })
await request('POST', '/users', { email: 'x' }) // invalid: 400, no event
await request('POST', '/orders', { userId: 1, total: 250, card: '4242-4242-4242-4242' })
await request('POST', '/orders', { userId: 1, total: 99, card: '4000-0000-0000-0002' })

// user.created, 2 × order.placed, 2 × order.analytics; one dead letter (the declined card).
const deadline = Date.now() + 60_000
while ((seen.events < 5 || seen.deadLetters < 1 || gatewayCalls < 3) && Date.now() < deadline) {
  await new Promise(resolve => setTimeout(resolve, 50))
}
await new Promise(resolve => setTimeout(resolve, 300))
const ok = seen.events === 5 && seen.deadLetters === 1 && gatewayCalls >= 3

await app.close()
await worker.stop()
await tap.stop()
await messaging.close()
line('demo', ok
  ? `done: ${seen.events} events published and handled, 1 retried payment, ${seen.deadLetters} dead letter (${DLQ_HEADERS.reason} recorded)`
  : `FAILED: events=${seen.events}/5 deadLetters=${seen.deadLetters}/1 gatewayCalls=${gatewayCalls}/3`)
process.exit(ok ? 0 : 1)
