import { expect } from 'chai'
import { Registry } from 'prom-client'
import { heraldMetrics, type HeraldMetrics } from '../../plugins/metrics.js'
import { createMessaging, messageHandler, startConsumers, type Messaging, type Runner } from '../../lib/index.js'
import { cleanUpRun } from '../cleanup.js'
import { promValue } from './prom.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from '../helpers.js'

for (const kind of selectedBrokers()) {
  describe(`metrics: ${kind}`, function () {
    this.timeout(60_000)
    const open: Array<Messaging | Runner> = []
    const queues: string[] = []
    let registry: Registry
    let metrics: HeraldMetrics

    beforeEach(() => {
      registry = new Registry()
      metrics = heraldMetrics({ registry, labels: { service: 'orders' } })
    })
    afterEach(async () => {
      metrics.close()
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
    })
    after(async () => { await cleanUpRun(kind, queues) })

    async function start (m: Messaging, handlers: unknown[]): Promise<Runner> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false })
      open.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
      return runner
    }

    const value = async (name: string, labels: Record<string, string>): Promise<number> => await promValue(registry, name, labels)

    it('counts publishes and consumed messages by topic, group and outcome, times attempts, and returns in-flight to zero', async function () {
      const m = createMessaging(brokerOptions(kind))
      open.push(m)
      const topic = randomName()
      const group = randomName('g')
      let calls = 0
      await start(m, [messageHandler({ topic, group, maxRetries: 1, retryDelay: 10 }, async () => {
        if (++calls === 1) throw new Error('first attempt fails')
      })])
      await m.publishEvent('user.created', { id: 1 }, { topic })
      await eventually(async () => await value('herald_consumed_messages_total', { topic, group, outcome: 'ack' }) === 1, 'the ack to be counted')

      expect(await value('herald_published_messages_total', { topic, outcome: 'ok', service: 'orders' })).to.equal(1)
      expect(await value('herald_publish_duration_seconds_count', { topic })).to.equal(1)
      expect(await value('herald_consumed_messages_total', { topic, group, outcome: 'retry', service: 'orders' })).to.equal(1)
      expect(await value('herald_process_duration_seconds_count', { topic, group })).to.equal(2)
      expect(await value('herald_in_flight_messages', { group })).to.equal(0)
      const text = await registry.metrics()
      expect(text).to.not.match(/event-id|first attempt fails/)
    })

    it('reports a group\'s lag at scrape time: messages not yet settled', async function () {
      const m = createMessaging(brokerOptions(kind))
      open.push(m)
      const topic = randomName()
      const group = randomName('g')
      let unblock!: () => void
      const blocked = new Promise<void>(resolve => { unblock = resolve })
      let handled = 0
      await start(m, [messageHandler({ topic, group, concurrency: 1 }, async () => { await blocked; handled++ })])
      // RabbitMQ tells only the messages still in the queue: those its consumer took ahead
      // (the prefetch: room in flight + room for waiting retries) are out of the count.
      const ahead = kind === 'rabbitmq' ? rabbitMqPrefetch(1) : 0
      for (let i = 0; i < ahead + 3; i++) await m.publishEvent('user.created', { id: 1 }, { topic, key: 'one-key' })
      await eventually(async () => await value('herald_consumer_lag_messages', { topic, group }) === 3, 'a lag of 3')
      unblock()
      await eventually(() => handled === ahead + 3, 'the messages to be handled')
      await eventually(async () => await value('herald_consumer_lag_messages', { topic, group }) === 0, 'a lag of 0')
    })
  })
}

/** The prefetch the runner asks of RabbitMQ for one handler of this concurrency (see lib/runner/handler-consumer.ts). */
function rabbitMqPrefetch (concurrency: number): number {
  return Math.max(2, concurrency * 2) + Math.max(10, concurrency * 10)
}
