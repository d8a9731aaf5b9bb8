/**
 * A retry stored in the broker (`durableRetryAfter`) outlives the worker: the worker that
 * failed the message is SIGKILLed while the retry waits; the broker keeps it (RabbitMQ: the
 * tier queue; Redis: the group's due set; Kafka: the group's retry topic), and the next
 * worker handles it once it is due, with attempt 2, not before. Not on the embedded broker:
 * its retries die with the process.
 */
import { expect } from 'chai'
import { createMessaging, messageHandler, startConsumers, type Messaging } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { retryQueueName, retryTier } from '../../lib/brokers/rabbitmq/rabbitmq-retries.js'
import { groupRetryTopic } from '../../lib/brokers/shared/group-destination.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, eventually, randomName } from '../helpers.js'
import { heldRetries } from '../support/retry-store.js'
import { deadLetterCount, faultOptions, publishJobs, queuesOf, workerConfig } from './fault-setup.js'
import { WorkerProcess } from './worker-process.js'

const KINDS = (['kafka', 'rabbitmq', 'redis'] as const).filter(k => brokerSelected(k))

for (const kind of KINDS) {
  describe(`faults: durable retries (${kind})`, function () {
    this.timeout(120_000)
    const queues: string[] = []
    let messaging: Messaging | undefined

    afterEach(async function () {
      await WorkerProcess.killAll()
      await messaging?.close()
      messaging = undefined
    })

    after(async function () {
      await cleanUpRun(kind as BrokerKind, queues)
    })

    it('a retry kept by the broker survives a SIGKILL of its worker during the wait and is handled by the next worker once due, with attempt 2', async function () {
      const topic = randomName('faults-durable')
      const group = randomName('g')
      const delay = 5000
      queues.push(...queuesOf(topic, group), retryQueueName(topic, group, retryTier(delay)))
      messaging = createMessaging({ ...faultOptions(kind), logger: false })
      if (kind === 'rabbitmq') {
        // The group's queue must exist before the publish, or the message is unroutable.
        const runner = await startConsumers({ messaging, signals: false, handlers: [messageHandler({ topic, group }, async () => {})] })
        await runner.stop()
      }
      const config = workerConfig(kind, topic, group, { concurrency: 1, maxRetries: 1, retryDelay: delay, durableRetryAfter: 1000, failFirst: [0] })
      await publishJobs(messaging, topic, 1)
      const a = new WorkerProcess('A', config)
      await a.until(w => w.of('log').some(l => l.msg?.includes('retry stored in the broker') === true), 'the first attempt failed and its retry was stored (the original acknowledged)', 45_000)
      const failedAt = a.of('fail')[0]!.t
      a.kill('SIGKILL')
      await a.exited()
      expect(await heldRetries(kind, topic, group, delay), 'the retry in the broker\'s retry store with no worker running').to.equal(1)
      const b = new WorkerProcess('B', config)
      await b.until(w => w.of('done').length === 1, 'the retry handled by the next worker', 45_000)
      const starts = b.of('start')
      expect(starts.map(l => l.attempt), 'attempts in B').to.deep.equal([2])
      expect(starts[0]!.t, 'handled once due (one retryDelay after the failure), not before').to.be.at.least(failedAt + delay)
      // Acknowledged after the handler returned, and on Kafka committed with the acks of the
      // next few milliseconds: the store empties once that commit lands, not at 'done'.
      await eventually(async () => await heldRetries(kind, topic, group, delay) === 0, 'the retry store to empty once the retry was handled', 15_000, 50)
      expect(await deadLetterCount(kind, topic, group), 'dead letters').to.equal(0)
    })

    if (kind === 'kafka') {
      it('after a worker died, a retry not due yet at the head of a retry-topic partition it had read from does not stall the next worker\'s other messages until due', async function () {
        const topic = randomName('faults-durable')
        const group = randomName('g')
        const delay = 25_000
        messaging = createMessaging({ ...faultOptions(kind), logger: false })
        const config = workerConfig(kind, topic, group, { concurrency: 1, maxRetries: 1, retryDelay: delay, durableRetryAfter: 1000, failFirst: [1] })
        const a = new WorkerProcess('A', config)
        await a.ready()
        // A message A handles from the retry topic (a replay, say), with the key of the retry to come: A's commit there carries a lease past it.
        const ids = new Map<number, string>()
        for (const [n, to] of [[9, groupRetryTopic(topic, group)], [1, topic]] as const) {
          ids.set(n, (await messaging.publishEvent('fault.job', { n }, { topic: to, key: 'k' })).id)
          await a.until(w => w.of(n === 9 ? 'done' : 'fail').some(l => l.n === n), `message ${n} handled (9) or failed (1)`, 45_000)
        }
        await a.until(w => w.of('log').some(l => l.msg?.includes('retry stored in the broker') === true), 'the retry of message 1 stored', 45_000)
        const failedAt = a.of('fail')[0]!.t
        a.kill('SIGKILL')
        await a.exited()
        const b = new WorkerProcess('B', config)
        await b.ready(60_000)
        await messaging.publishEvent('fault.job', { n: 2 }, { topic, key: 'other' })
        await b.until(w => w.of('done').some(l => l.n === 2), 'message 2 handled by B', 60_000)
        const two = b.of('done').find(l => l.n === 2)!
        expect(two.t, 'message 2 handled before the retry of message 1 was due').to.be.below(failedAt + delay)
        expect(b.of('start').filter(l => l.n === 1), 'the retry of message 1 not started before message 2 was handled').to.deep.equal([])
        await b.until(w => w.of('done').some(l => l.n === 1), 'the retry of message 1, once due', 60_000)
        expect(b.of('start').filter(l => l.n === 1).map(l => l.attempt), 'attempts of message 1 in B').to.deep.equal([2])
        expect(b.of('start').find(l => l.n === 1)!.t).to.be.at.least(failedAt + delay)
        expect(b.started().has(ids.get(9)!), 'the handled replay not handled again').to.equal(false)
      })
    }
  })
}
