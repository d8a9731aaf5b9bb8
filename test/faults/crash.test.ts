/**
 * A worker process killed with SIGKILL while a handler runs: what it held unacknowledged
 * goes to the next worker of the group (Kafka: from the last committed offset, once the
 * dead member's session expires; RabbitMQ: requeued when its connection drops; Redis: its
 * pending entries reclaimed after `claimIdleMs`), and every message is handled at least
 * once. Not on the embedded broker: it dies with the process.
 */
import { expect } from 'chai'
import { createMessaging, type Messaging } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, randomName } from '../helpers.js'
import { faultOptions, publishJobs, queuesOf, tally, workerConfig } from './fault-setup.js'
import { WorkerProcess } from './worker-process.js'

const KINDS = (['kafka', 'rabbitmq', 'redis'] as const).filter(k => brokerSelected(k))

for (const kind of KINDS) {
  describe(`faults: SIGKILL mid-handler (${kind})`, function () {
    this.timeout(60_000)
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

    it('the messages a killed worker was handling go to the next worker of the group; every message is handled', async function () {
      const topic = randomName('faults-kill')
      const group = randomName('g')
      queues.push(...queuesOf(topic, group))
      const count = 30
      const a = new WorkerProcess('A', workerConfig(kind, topic, group, { delayMs: 300, concurrency: 3 }))
      await a.ready()
      messaging = createMessaging({ ...faultOptions(kind), logger: false })
      const ids = await publishJobs(messaging, topic, count)

      // Kill A while at least one handler is half-way (started, not finished), after it finished a few.
      await a.until(w => w.finished().size >= 3 && [...w.started()].some(id => !w.finished().has(id)), 'a handler in progress after a few finished')
      a.kill('SIGKILL')
      const exit = await a.exited()
      expect(exit.signal).to.equal('SIGKILL')
      const inProgress = [...a.started()].filter(id => !a.finished().has(id))
      expect(inProgress, 'handlers in progress when A was killed').to.not.be.empty

      const b = new WorkerProcess('B', workerConfig(kind, topic, group, { delayMs: 5, concurrency: 5 }))
      await b.ready()
      await b.until(() => tally([a, b]).handled.size === count, `all ${count} messages handled by A or B`, 30_000)

      const { handled, duplicates } = tally([a, b])
      expect([...ids.values()].every(id => handled.has(id)), 'every published message handled').to.equal(true)
      for (const id of inProgress) expect(b.finished().has(id), `message ${id}, in progress in A, handled by B`).to.equal(true)
      // B may also get messages A finished but had not acknowledged yet: duplicates, never losses.
      const twice = [...a.finished()].filter(id => b.finished().has(id))
      expect(duplicates).to.equal(twice.length)
      if (kind !== 'kafka') {
        // RabbitMQ (redelivered flag) and Redis (delivery count) tell the handler it is a redelivery.
        for (const id of inProgress) {
          const attempt = b.of('start').find(l => l.id === id)!.attempt!
          expect(attempt, `attempt of the redelivered message ${id}`).to.be.greaterThan(1)
        }
      }
      this.test!.title += ` [${inProgress.length} in progress, ${duplicates} duplicate(s)]`
    })
  })
}
