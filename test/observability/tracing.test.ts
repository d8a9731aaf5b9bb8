import { expect } from 'chai'
import Fastify from 'fastify'
import request from 'supertest'
import { context, metrics, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { Registry } from 'prom-client'
import { AlwaysOffSampler, ParentBasedSampler, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import herald from '../../plugins/fastify.js'
import { createMessaging, messageHandler, startConsumers, type Messaging, type Runner } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from '../helpers.js'
import { RecordingLogger } from '../support/recording-logger.js'
import { parentOf, registerTestSdk, TestReader, type TestSdk } from './otel-setup.js'
import { heraldMetrics } from '../../plugins/metrics.js'
import { promValue } from './prom.js'

const SYSTEM: Record<BrokerKind, string> = { kafka: 'kafka', rabbitmq: 'rabbitmq', redis: 'redis', memory: 'herald.memory' }

/** A logger that keeps every line with its bindings. */
for (const kind of selectedBrokers()) {
  describe(`tracing: ${kind}`, function () {
    this.timeout(60_000)
    let sdk: TestSdk
    const open: Array<Messaging | Runner | { close(): Promise<unknown> }> = []
    const queues: string[] = []

    before(() => { sdk = registerTestSdk() })
    after(async () => {
      await sdk.close()
      await cleanUpRun(kind, queues)
    })
    afterEach(async () => {
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
      sdk.exporter.reset()
    })

    function messaging (extra: Record<string, unknown> = {}): Messaging {
      const m = createMessaging({ ...brokerOptions(kind), ...extra })
      open.push(m)
      return m
    }

    async function start (m: Messaging, handlers: unknown[]): Promise<Runner> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false })
      open.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
      return runner
    }

    const named = (name: string): ReadableSpan[] => sdk.spans().filter(s => s.name === name)
    const one = async (name: string): Promise<ReadableSpan[]> => await eventually(() => named(name).length === 1 && named(name), `the span "${name}"`) as ReadableSpan[]

    it('one trace runs from the HTTP request through the producer span and the message headers to the consumer span and a span made in the handler', async function () {
      const topic = randomName()
      const group = randomName('g')
      const logger = new RecordingLogger()
      const worker = messaging({ logger })
      let headers: Record<string, string> | undefined
      await start(worker, [messageHandler({ topic, group }, async (_message, ctx) => {
        headers = ctx.headers
        trace.getTracer('user').startActiveSpan('send welcome email', span => span.end())
        ctx.logger.info({}, 'welcome email sent')
      })])

      const app = Fastify()
      // What an HTTP instrumentation does: the request's handling runs inside its span.
      app.addHook('onRequest', (_req, _reply, done) => {
        const span = trace.getTracer('http').startSpan('POST /users', { kind: SpanKind.SERVER })
        _reply.raw.on('finish', () => span.end())
        context.with(trace.setSpan(context.active(), span), done)
      })
      await app.register(herald, { messaging: messaging() })
      app.post('/users', { config: { event: { name: 'user.created', topic, keyField: 'id' } } }, async () => ({ id: 7 }))
      await app.ready()
      open.push({ close: () => app.close() })
      await request(app.server).post('/users').expect(200)

      const [handlerSpan] = await one('send welcome email')
      const [requestSpan] = named('POST /users')
      const [producer] = named(`send ${topic}`)
      const [consumer] = await one(`process ${topic}`)
      expect(requestSpan, 'request span').to.not.equal(undefined)
      expect(producer, 'producer span').to.not.equal(undefined)
      const traceId = requestSpan!.spanContext().traceId
      for (const span of [producer!, consumer!, handlerSpan!]) expect(span.spanContext().traceId).to.equal(traceId)

      expect(producer!.kind).to.equal(SpanKind.PRODUCER)
      expect(parentOf(producer!)).to.equal(requestSpan!.spanContext().spanId)
      expect(producer!.attributes).to.include({ 'messaging.system': SYSTEM[kind], 'messaging.destination.name': topic, 'messaging.operation.type': 'send' })
      expect(producer!.attributes['messaging.message.id']).to.equal(headers!['event-id'])
      if (kind === 'kafka') expect(producer!.attributes['messaging.kafka.message.key']).to.equal('7')

      expect(headers!.traceparent).to.equal(`00-${traceId}-${producer!.spanContext().spanId}-01`)

      expect(consumer!.kind).to.equal(SpanKind.CONSUMER)
      expect(parentOf(consumer!)).to.equal(producer!.spanContext().spanId)
      expect(consumer!.links.map(l => l.context.spanId)).to.deep.equal([producer!.spanContext().spanId])
      expect(consumer!.attributes).to.include({ 'messaging.system': SYSTEM[kind], 'messaging.destination.name': topic, 'messaging.consumer.group.name': group, 'messaging.message.id': headers!['event-id'], 'herald.attempt': 1, 'herald.outcome': 'ack' })

      expect(parentOf(handlerSpan!)).to.equal(consumer!.spanContext().spanId)
      const line = logger.records.find(r => r.msg === 'welcome email sent')
      expect(line?.fields).to.include({ trace_id: traceId, span_id: consumer!.spanContext().spanId })
    })

    it('a failed attempt records its exception; the retry starts a new trace linked to the producer; the dead-lettering is its own span and the dead letter keeps the original traceparent', async function () {
      const topic = randomName()
      const group = randomName('g')
      const m = messaging()
      const dlq: Array<Record<string, string>> = []
      await start(m, [
        messageHandler({ topic, group, maxRetries: 1, retryDelay: 10 }, async () => { throw new Error('the mail server said no') }),
        messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq-reader') }, async (_message, ctx) => { dlq.push(ctx.headers) })
      ])
      await m.publishEvent('user.created', { id: 1 }, { topic })

      // The dead letter can be read before the broker confirms it: the spans end with the confirm and the ack.
      await eventually(() => dlq.length === 1 && named(`send ${topic}.${group}.dlq`).length === 1 && named(`process ${topic}`).length === 2, 'the dead letter and the spans of its attempts and of its sending')
      const [producer] = named(`send ${topic}`)
      const attempts = named(`process ${topic}`).sort((a, b) => Number(a.attributes['herald.attempt']) - Number(b.attributes['herald.attempt']))
      const [deadLettering] = named(`send ${topic}.${group}.dlq`)
      expect(attempts.map(a => [a.attributes['herald.attempt'], a.attributes['herald.outcome']])).to.deep.equal([[1, 'retry'], [2, 'dead_letter']])
      for (const attempt of attempts) {
        expect(attempt.status.code).to.equal(SpanStatusCode.ERROR)
        expect(attempt.events.find(e => e.name === 'exception')?.attributes?.['exception.message']).to.equal('the mail server said no')
        expect(attempt.links.map(l => l.context.spanId)).to.deep.equal([producer!.spanContext().spanId])
      }
      expect(parentOf(attempts[0]!)).to.equal(producer!.spanContext().spanId)
      expect(parentOf(attempts[1]!)).to.equal(undefined)
      expect(attempts[1]!.spanContext().traceId).to.not.equal(producer!.spanContext().traceId)

      expect(deadLettering, 'dead-lettering span').to.not.equal(undefined)
      expect(deadLettering!.kind).to.equal(SpanKind.PRODUCER)
      expect(deadLettering!.attributes).to.include({ 'herald.dead_letter': true, 'messaging.destination.name': `${topic}.${group}.dlq` })
      expect(parentOf(deadLettering!)).to.equal(attempts[1]!.spanContext().spanId)
      expect(dlq[0]!.traceparent).to.equal(`00-${producer!.spanContext().traceId}-${producer!.spanContext().spanId}-01`)
    })

    it('tracing: false publishes without spans or a traceparent header', async function () {
      const topic = randomName()
      const m = messaging({ tracing: false })
      const got: Array<Record<string, string>> = []
      await start(m, [messageHandler({ topic, group: randomName('g') }, async (_message, ctx) => { got.push(ctx.headers) })])
      await m.publishEvent('user.created', { id: 1 }, { topic })
      await eventually(() => got.length === 1, 'the message')
      expect(got[0]!.traceparent).to.equal(undefined)
      expect(named(`send ${topic}`)).to.deep.equal([])
      expect(named(`process ${topic}`)).to.deep.equal([])
    })
  })
}

describe('tracing: an SDK registered or removed while Herald runs', function () {
  this.timeout(30_000)

  it('traces from the next message once an SDK is registered, and stops once it is removed', async function () {
    const m = createMessaging(brokerOptions('memory'))
    const topic = randomName()
    const got: Array<Record<string, string>> = []
    const runner = await startConsumers({ messaging: m, handlers: [messageHandler({ topic, group: randomName('g') }, async (_message, ctx) => { got.push(ctx.headers) })], signals: false })
    const publish = async (n: number): Promise<Record<string, string>> => {
      await m.publishEvent('user.created', { id: n }, { topic })
      await eventually(() => got.length === n, `message ${n}`)
      return got[n - 1]!
    }
    try {
      expect((await publish(1)).traceparent).to.equal(undefined)
      const sdk = registerTestSdk()
      try {
        const headers = await publish(2)
        const spans = await eventually(() => sdk.spans().filter(s => s.name === `process ${topic}`).length === 1 && sdk.spans(), 'the consumer span') as ReadableSpan[]
        const producer = spans.find(s => s.name === `send ${topic}`)!
        expect(headers.traceparent).to.equal(`00-${producer.spanContext().traceId}-${producer.spanContext().spanId}-01`)
      } finally {
        await sdk.close()
      }
      expect((await publish(3)).traceparent).to.equal(undefined)
    } finally {
      await runner.stop()
      await m.close()
    }
  })
})

describe('tracing: a message the sampler drops', function () {
  this.timeout(30_000)

  it('has non-recording spans and an unsampled traceparent; its handler still runs in the attempt\'s context, so its own spans are dropped too and its log lines carry the trace id', async function () {
    const sdk = registerTestSdk(new ParentBasedSampler({ root: new AlwaysOffSampler() }))
    const logger = new RecordingLogger()
    const m = createMessaging({ ...brokerOptions('memory'), logger })
    const topic = randomName()
    let seen: { headers: Record<string, string>, active: string | undefined, inside: string, recording: boolean } | undefined
    let runner: Runner | undefined
    try {
      runner = await startConsumers({
        messaging: m,
        signals: false,
        handlers: [messageHandler({ topic, group: randomName('g') }, async (_message, ctx) => {
          const span = trace.getTracer('user').startSpan('inside')
          seen = { headers: ctx.headers, active: trace.getActiveSpan()?.spanContext().traceId, inside: span.spanContext().traceId, recording: span.isRecording() }
          span.end()
          ctx.logger.info({}, 'handled')
        })]
      })
      await m.publishEvent('user.created', { id: 1 }, { topic })
      await eventually(() => seen !== undefined, 'the message')
      const [, traceId, , flags] = seen!.headers.traceparent!.split('-')
      expect(flags, 'traceparent flags').to.equal('00')
      expect(seen!.active, 'the active span in the handler').to.equal(traceId)
      expect(seen!.inside, 'a span made in the handler').to.equal(traceId)
      expect(seen!.recording).to.equal(false)
      expect(logger.records.find(r => r.msg === 'handled')?.fields).to.include({ trace_id: traceId })
      expect(sdk.spans()).to.deep.equal([])
    } finally {
      await runner?.stop()
      await m.close()
      await sdk.close()
    }
  })
})

describe('tracing with OpenTelemetry metrics and herald/metrics on too', function () {
  this.timeout(30_000)

  it('the handler still runs inside its attempt\'s span, and both metrics count the message', async function () {
    const sdk = registerTestSdk()
    const reader = new TestReader()
    const provider = new MeterProvider({ readers: [reader] })
    metrics.setGlobalMeterProvider(provider)
    const registry = new Registry()
    const prom = heraldMetrics({ registry })
    const m = createMessaging(brokerOptions('memory'))
    const topic = randomName()
    const group = randomName('g')
    let runner: Runner | undefined
    try {
      runner = await startConsumers({ messaging: m, handlers: [messageHandler({ topic, group }, async () => { trace.getTracer('test').startActiveSpan('inside', span => span.end()) })], signals: false })
      await m.publishEvent('user.created', { id: 1 }, { topic })
      const spans = await eventually(() => sdk.spans().some(s => s.name === 'inside') && sdk.spans().some(s => s.name === `process ${topic}`) && sdk.spans(), 'the spans') as ReadableSpan[]
      const consumer = spans.find(s => s.name === `process ${topic}`)!
      expect(parentOf(spans.find(s => s.name === 'inside')!)).to.equal(consumer.spanContext().spanId)
      await eventually(async () => await promValue(registry, 'herald_consumed_messages_total', { topic, group, outcome: 'ack' }) === 1, 'the prom-client count')
      const { resourceMetrics } = await reader.collect()
      const consumed = resourceMetrics.scopeMetrics.flatMap(s => s.metrics).find(x => x.descriptor.name === 'messaging.client.consumed.messages')
      expect(consumed?.dataPoints.map(p => [p.attributes['messaging.destination.name'], p.attributes['herald.outcome'], p.value])).to.deep.include([topic, 'ack', 1])
    } finally {
      await runner?.stop()
      await m.close()
      prom.close()
      metrics.disable()
      await provider.shutdown()
      await sdk.close()
    }
  })
})
