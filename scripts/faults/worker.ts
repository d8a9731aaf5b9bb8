// The fault harness's worker: a real `startConsumers` process. One handler takes the orders
// the service published (a little work, then one line per handled event appended to the
// handled file), a second one reads the group's dead-letter topic and records each dead
// letter's reason. Started by run.ts as `node --import tsx scripts/faults/worker.ts`, with
// its settings in HERALD_FAULTS_SETTINGS; SIGTERM stops it gracefully, SIGKILL is a fault.
import { closeSync, openSync, writeSync } from 'node:fs'
import { Type } from '@sinclair/typebox'
import { createMessaging, DLQ_HEADERS, messageHandler, startConsumers } from '../../lib/index.js'
import { brokerTuning, formatHandled, POISON_HEADER, REJECT_MARKER, SETTINGS_ENV, type ChildSettings, type DeadRecord } from './common.js'

const settings = JSON.parse(process.env[SETTINGS_ENV] ?? '{}') as ChildSettings
if (settings.handledFile === undefined || settings.deadFile === undefined) throw new Error(`worker: ${SETTINGS_ENV} has no handledFile/deadFile`)

// Appended with one write per line: the line is in the kernel once the handler returns, so a
// SIGKILL right after loses nothing the harness needs (no fsync: the machine does not crash).
const handled = openSync(settings.handledFile, 'a')
const dead = openSync(settings.deadFile, 'a')

const Order = Type.Object({
  requestId: Type.String(),
  n: Type.Number(),
  marker: Type.Optional(Type.String())
})

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

const orders = messageHandler(
  { topic: settings.topic, group: settings.group, schema: Order, concurrency: settings.concurrency ?? 8, maxRetries: 2, retryDelay: 200 },
  async function handleOrder (order, ctx) {
    // Realistic tiny work: a database write or an HTTP call of a few milliseconds.
    await sleep(1 + Math.random() * 4)
    if (order.marker === REJECT_MARKER) throw new Error(`order ${order.requestId} rejected by the handler (poison)`)
    writeSync(handled, formatHandled({ requestId: order.requestId, eventId: ctx.event?.id ?? '-', attempt: ctx.attempt, pid: process.pid, at: Date.now() }))
  })

const deadLetters = messageHandler(
  { topic: `${settings.topic}.${settings.group}.dlq`, group: settings.deadLetterGroup, concurrency: 2 },
  async function recordDeadLetter (message, ctx) {
    const record: DeadRecord = {
      poison: ctx.headers[POISON_HEADER],
      reason: ctx.headers[DLQ_HEADERS.reason],
      requestId: typeof message === 'object' && message !== null ? String((message as { requestId?: unknown }).requestId) : undefined,
      pid: process.pid
    }
    writeSync(dead, JSON.stringify(record) + '\n')
  })

const messaging = createMessaging({
  broker: settings.broker,
  ...settings.connection,
  ...brokerTuning(settings.broker),
  source: 'faults-worker'
})

const runner = await startConsumers({ messaging, handlers: [orders, deadLetters], signals: false, shutdownTimeout: 10_000 })
process.send?.({ ready: true, pid: process.pid })

let stopping = false
const stop = async (): Promise<void> => {
  if (stopping) return
  stopping = true
  const force = setTimeout(() => process.exit(3), 20_000)
  force.unref()
  try {
    await runner.stop()
    await messaging.close()
  } finally {
    closeSync(handled)
    closeSync(dead)
    process.exit(0)
  }
}
process.once('SIGTERM', () => { void stop() })
process.once('SIGINT', () => { void stop() })
// The harness went away without stopping us (it crashed or was killed): do not linger.
process.once('disconnect', () => { void stop() })
