import { expect } from 'chai'
import { metrics } from '@opentelemetry/api'
import { MeterProvider, type Histogram as HistogramPoint, type MetricData } from '@opentelemetry/sdk-metrics'
import { Registry } from 'prom-client'
import { heraldMetrics, type HeraldMetrics } from '../../plugins/metrics.js'
import { createMessaging, messageHandler, startConsumers, type Messaging, type Runner } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { promValue } from './prom.js'
import { TestReader } from './otel-setup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from '../helpers.js'

const SYSTEM: Record<BrokerKind, string> = { kafka: 'kafka', rabbitmq: 'rabbitmq', redis: 'redis', memory: 'herald.memory' }

for (const kind of selectedBrokers()) {
  describe(`OpenTelemetry metrics: ${kind}`, function () {
    this.timeout(60_000)
    const open: Array<Messaging | Runner> = []
    const queues: string[] = []
    let reader: TestReader
    let provider: MeterProvider
    let registry: Registry
    let promMetrics: HeraldMetrics

    beforeEach(() => {
      reader = new TestReader()
      provider = new MeterProvider({ readers: [reader] })
      metrics.setGlobalMeterProvider(provider)
      registry = new Registry()
      promMetrics = heraldMetrics({ registry })
    })
    afterEach(async () => {
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
      promMetrics.close()
      metrics.disable()
      await provider.shutdown()
    })
    after(async () => { await cleanUpRun(kind, queues) })

    async function start (m: Messaging, handlers: unknown[]): Promise<Runner> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false })
      open.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
      return runner
    }

    function messaging (extra: Record<string, unknown> = {}): Messaging {
      const m = createMessaging({ ...brokerOptions(kind), ...extra })
      open.push(m)
      return m
    }

    const prom = async (name: string, labels: Record<string, string>): Promise<number> => await promValue(registry, name, labels)

    async function collect (): Promise<MetricData[]> {
      const { resourceMetrics, errors } = await reader.collect()
      expect(errors).to.deep.equal([])
      return resourceMetrics.scopeMetrics.filter(s => s.scope.name === 'herald').flatMap(s => s.metrics)
    }

    /** The sum over an OTel metric's points whose attributes include `attributes` (a histogram's: its count). */
    function otelValue (data: MetricData[], name: string, attributes: Record<string, unknown>): number {
      const metric = data.find(m => m.descriptor.name === name)
      let total = 0
      for (const point of (metric?.dataPoints ?? []) as Array<{ attributes: Record<string, unknown>, value: number | HistogramPoint }>) {
        if (Object.entries(attributes).every(([k, v]) => v === undefined ? !(k in point.attributes) : point.attributes[k] === v)) total += typeof point.value === 'number' ? point.value : point.value.count
      }
      return total
    }

    it('records publishes, attempts and settled messages under the messaging conventions, equal to the prom-client numbers by outcome', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const seen = new Map<number, number>()
      await start(m, [messageHandler({ topic, group, maxRetries: 1, retryDelay: 10 }, async (data: { n: number }) => {
        const calls = (seen.get(data.n) ?? 0) + 1
        seen.set(data.n, calls)
        if (data.n === 1) throw new Error('always fails')
        if (data.n === 2 && calls === 1) throw new Error('fails once')
      })])
      for (const n of [1, 2, 3, 4]) await m.publishEvent('order.placed', { n }, { topic, key: `k${n}` })
      await eventually(async () => await prom('herald_consumed_messages_total', { topic, group, outcome: 'ack' }) === 3 && await prom('herald_consumed_messages_total', { topic, group, outcome: 'dead_letter' }) === 1, 'three acks and one dead letter')

      const data = await collect()
      const sent = { 'messaging.system': SYSTEM[kind], 'messaging.destination.name': topic, 'messaging.operation.name': 'send', 'error.type': undefined }
      expect(otelValue(data, 'messaging.client.sent.messages', sent)).to.equal(await prom('herald_published_messages_total', { topic, outcome: 'ok' })).and.equal(4)
      expect(otelValue(data, 'messaging.client.operation.duration', sent)).to.equal(await prom('herald_publish_duration_seconds_count', { topic })).and.equal(4)
      const consumer = { 'messaging.system': SYSTEM[kind], 'messaging.destination.name': topic, 'messaging.consumer.group.name': group, 'messaging.operation.name': 'process' }
      for (const outcome of ['ack', 'dead_letter'] as const) {
        expect(otelValue(data, 'messaging.client.consumed.messages', { ...consumer, 'herald.outcome': outcome }), outcome)
          .to.equal(await prom('herald_consumed_messages_total', { topic, group, outcome }))
      }
      expect(otelValue(data, 'messaging.client.consumed.messages', consumer)).to.equal(4)
      // A retried attempt: one process point with outcome retry, as prom-client's retry count.
      expect(otelValue(data, 'messaging.process.duration', { ...consumer, 'herald.outcome': 'retry', 'error.type': 'Error' }))
        .to.equal(await prom('herald_consumed_messages_total', { topic, group, outcome: 'retry' })).and.equal(2)
      expect(otelValue(data, 'messaging.process.duration', { ...consumer, 'herald.outcome': 'dead_letter', 'error.type': 'Error' })).to.equal(1)
      expect(otelValue(data, 'messaging.process.duration', consumer)).to.equal(await prom('herald_process_duration_seconds_count', { topic, group })).and.equal(6)
      expect(otelValue(data, 'herald.consumer.in_flight', { 'messaging.consumer.group.name': group })).to.equal(0)
      const units = Object.fromEntries(data.map(d => [d.descriptor.name, d.descriptor.unit]))
      expect(units).to.include({ 'messaging.client.operation.duration': 's', 'messaging.process.duration': 's', 'messaging.client.sent.messages': '{message}' })
      await eventually(async () => otelValue(await collect(), 'herald.consumer.lag', { 'messaging.destination.name': topic, 'messaging.consumer.group.name': group }) === 0 &&
        (await collect()).find(d => d.descriptor.name === 'herald.consumer.lag')!.dataPoints.some(p => p.attributes['messaging.destination.name'] === topic), 'the lag gauge to read 0 for the topic')
    })

    it('records nothing for a messaging instance with tracing: false, which prom-client still counts', async function () {
      const m = messaging({ tracing: false })
      const topic = randomName()
      const group = randomName('g')
      let handled = 0
      await start(m, [messageHandler({ topic, group }, async () => { handled++ })])
      await m.publishEvent('order.placed', { n: 1 }, { topic })
      await eventually(() => handled === 1, 'the message to be handled')
      await eventually(async () => await prom('herald_consumed_messages_total', { topic, group, outcome: 'ack' }) === 1, 'prom-client to count the ack')
      const data = await collect()
      expect(otelValue(data, 'messaging.client.sent.messages', { 'messaging.destination.name': topic })).to.equal(0)
      expect(otelValue(data, 'messaging.client.consumed.messages', { 'messaging.destination.name': topic })).to.equal(0)
      expect(otelValue(data, 'messaging.process.duration', { 'messaging.destination.name': topic })).to.equal(0)
    })
  })
}
