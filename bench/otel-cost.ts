// Where the cost of observability with an OpenTelemetry SDK registered goes, in one process
// on the embedded broker: `tsx bench/otel-cost.ts MODE [N]` publishes N messages at 100 in
// flight and consumes them, and prints the CPU time per message of both sides together.
// Each mode runs in a fresh process (`bash bench/otel-cost.sh` runs them all and splits the cost):
//   herald-off      Herald, `tracing: false`, with the SDK registered (nothing of Herald's listens)
//   herald-off-als  the same with the context manager's async hooks switched on
//   herald-on       Herald at its defaults with the SDK registered: its spans and OTel metrics
//   herald-sampled  the same with a ParentBased(TraceIdRatioBased(0.1)) sampler
//   raw-off         no Herald: a loop with the same awaits per message and no telemetry
//   raw-on          no Herald: that loop creating the same spans (PRODUCER with inject,
//                   CONSUMER parented on the extracted context, linked, the handler run in
//                   its context) and the same metric records through the raw API
//   raw-sampled     the same with the sampler
//   (RAW_PART=traces or RAW_PART=metrics: a raw mode makes only that half)
//   (PUBLISH_ONLY=1: a Herald mode only publishes; HERALD_PROM=1: `herald/metrics` on too)
// Herald's own share is (herald-on − herald-off) − (raw-on − raw-off): what the SDK costs
// for the same telemetry without Herald around it is the rest.
import { context, metrics, propagation, ROOT_CONTEXT, SpanKind, trace, type Attributes } from '@opentelemetry/api'
import { createMessaging, messageHandler, startConsumers } from '../dist/lib/index.js'
import { heraldMetrics } from '../dist/plugins/metrics.js'
import { registerOtelSdk } from './otel-sdk.js'

const mode = process.argv[2] ?? 'herald-on'
const n = Number(process.argv[3] ?? 20_000)
const sampled = mode.endsWith('-sampled')
const { tracerProvider, meterProvider, reader } = registerOtelSdk(sampled)

/** Runs `send(i)` for i < count, 100 at once. */
async function lanes (count: number, send: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: 100 }, async () => { while (next < count) await send(next++) }))
}

async function herald (): Promise<void> {
  if (process.env.HERALD_PROM === '1') heraldMetrics()
  const messaging = createMessaging({ broker: 'memory', source: 'bench', logger: false, ...(mode.startsWith('herald-off') ? { tracing: false } : {}) })
  let handled = 0
  let done: () => void = () => {}
  const all = new Promise<void>(resolve => { done = resolve })
  // PUBLISH_ONLY=1: no consumer, the publishing side alone.
  const publishOnly = process.env.PUBLISH_ONLY === '1'
  const runner = publishOnly ? undefined : await startConsumers({ messaging, signals: false, handlers: [messageHandler({ topic: 'cost', group: 'g' }, async () => { if (++handled === n) done() })] })
  await messaging.publishEvent('warm', { i: -1 }, { topic: 'warm' })
  // herald-off-als: as herald-off, with the context manager's async hooks switched on (as the
  // first span a handler runs in does): what those hooks cost Herald's own promises.
  if (mode === 'herald-off-als') context.with(context.active(), () => {})
  const cpu = process.cpuUsage()
  await lanes(n, async i => { await messaging.publishEvent('order.placed', { i }, { topic: 'cost', key: `k${i % 64}` }) })
  if (!publishOnly) await all
  report(cpu)
  await runner?.stop()
  await messaging.close()
}

async function raw (): Promise<void> {
  const on = mode !== 'raw-off'
  // RAW_PART=traces or metrics: only that half, to split the SDK's cost.
  const part = process.env.RAW_PART
  const tracer = trace.getTracer('raw')
  const meter = metrics.getMeter('raw')
  const sent = meter.createCounter('messaging.client.sent.messages')
  const sendDuration = meter.createHistogram('messaging.client.operation.duration')
  const consumed = meter.createCounter('messaging.client.consumed.messages')
  const processDuration = meter.createHistogram('messaging.process.duration')
  const sendAttrs: Attributes = { 'messaging.system': 'herald.memory', 'messaging.destination.name': 'cost', 'messaging.operation.name': 'send', 'messaging.operation.type': 'send' }
  const processAttrs: Attributes = { 'messaging.system': 'herald.memory', 'messaging.destination.name': 'cost', 'messaging.consumer.group.name': 'g', 'messaging.operation.name': 'process', 'messaging.operation.type': 'process', 'herald.outcome': 'ack' }
  const queue: Array<{ id: string, headers: Record<string, string> }> = []
  let handled = 0
  const handler = async (): Promise<void> => { handled++ }
  const consume = async (m: { id: string, headers: Record<string, string> }): Promise<void> => {
    if (!on || part === 'metrics') { await handler(); if (on) { processDuration.record(0.001, processAttrs); consumed.add(1, processAttrs) } return }
    const start = performance.now()
    const extracted = propagation.extract(ROOT_CONTEXT, m.headers)
    const origin = trace.getSpanContext(extracted)
    const span = tracer.startSpan('process cost', {
      kind: SpanKind.CONSUMER,
      links: origin !== undefined ? [{ context: origin }] : [],
      attributes: { ...processAttrs, 'herald.delivery.id': m.id, 'herald.attempt': 1, 'messaging.message.id': m.id }
    }, extracted)
    await context.with(trace.setSpan(extracted, span), handler)
    span.setAttribute('herald.outcome', 'ack')
    span.end()
    if (part === 'traces') return
    processDuration.record((performance.now() - start) / 1000, processAttrs)
    consumed.add(1, processAttrs)
  }
  const publish = async (i: number): Promise<void> => {
    const m = { id: `id-${i}`, headers: {} as Record<string, string> }
    if (on && part === 'metrics') {
      await Promise.resolve()
      queue.push(m)
      sent.add(1, sendAttrs)
      sendDuration.record(0.001, sendAttrs)
    } else if (on) {
      const start = performance.now()
      const parent = context.active()
      const span = tracer.startSpan('send cost', { kind: SpanKind.PRODUCER, attributes: { ...sendAttrs, 'messaging.message.id': m.id } }, parent)
      propagation.inject(trace.setSpan(parent, span), m.headers)
      await Promise.resolve()
      queue.push(m)
      span.end()
      if (part !== 'traces') sent.add(1, sendAttrs)
      if (part !== 'traces') sendDuration.record((performance.now() - start) / 1000, sendAttrs)
    } else {
      await Promise.resolve()
      queue.push(m)
    }
    await consume(queue.shift()!)
  }
  const cpu = process.cpuUsage()
  await lanes(n, publish)
  if (handled !== n) throw new Error(`handled ${handled} of ${n}`)
  report(cpu)
}

function report (cpu: NodeJS.CpuUsage): void {
  const used = process.cpuUsage(cpu)
  console.log(JSON.stringify({ mode, n, cpuUs: Number(((used.user + used.system) / n).toFixed(1)) }))
}

await (mode.startsWith('herald') ? herald() : raw())
await reader.collect()
await tracerProvider.shutdown()
await meterProvider.shutdown()
process.exit(0)
