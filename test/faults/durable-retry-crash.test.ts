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
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, randomName } from '../helpers.js'
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
      expect(await heldRetries(kind, topic, group, delay), 'the retry store emptied').to.equal(0)
      expect(await deadLetterCount(kind, topic, group), 'dead letters').to.equal(0)
    })
  })
}
