/**
 * Kafka: a member joining the group (a rebalance) while a message waits for its retry, or
 * while handlers run, loses nothing, and never has two members handle one message at the
 * same time: each message is held by one member at a time, from its first attempt to its
 * acknowledgement.
 */
import { expect } from 'chai'
import { createMessaging, type Messaging } from '../../lib/index.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, randomName } from '../helpers.js'
import { custodies, drained, faultOptions, overlaps, publishJobs, tally, workerConfig } from './fault-setup.js'
import { WorkerProcess } from './worker-process.js'

if (brokerSelected('kafka')) {
  describe('faults: Kafka rebalance', function () {
    this.timeout(60_000)
    let messaging: Messaging | undefined

    afterEach(async function () {
      await WorkerProcess.killAll()
      await messaging?.close()
      messaging = undefined
    })

    after(async function () {
      await cleanUpRun('kafka', [])
    })

    /** With HERALD_FAULTS_DEBUG=1, prints what the workers logged and handled, in time order. */
    function trace (workers: WorkerProcess[]): void {
      if (process.env.HERALD_FAULTS_DEBUG !== '1') return
      const lines = workers.flatMap(w => w.lines.map(l => ({ w: w.name, l }))).sort((x, y) => x.l.t - y.l.t)
      const t0 = lines[0]?.l.t ?? 0
      for (const { w, l } of lines) {
        const what = l.ev === 'log' ? `${l.level} ${l.msg} ${JSON.stringify(l.fields)}` : `${l.ev} n=${l.n} attempt=${l.attempt} ${l.messageId ?? ''}`
        process.stderr.write(`${((l.t - t0) / 1000).toFixed(3)} ${w} ${what}\n`)
      }
    }

    /** The most messages A still held when it rejoined the group after its first join. */
    function rejoinedHolding (w: WorkerProcess): number {
      const joins = w.of('log').filter(l => l.msg === 'joined Kafka consumer group')
      return Math.max(0, ...joins.slice(1).map(l => Number(l.fields?.holding ?? 0)))
    }

    function describeOverlaps (workers: WorkerProcess[]): string {
      return overlaps(custodies(workers)).map(([x, y]) => `${x.id}: pid ${x.pid} ${x.from.toFixed(0)}–${x.to.toFixed(0)} attempts ${x.attempts.join(',')} / pid ${y.pid} ${y.from.toFixed(0)}–${y.to.toFixed(0)} attempts ${y.attempts.join(',')}`).join('\n')
    }

    it('a member joins while messages wait for their retry: each is handled by one member at a time, none lost', async function () {
      const topic = randomName('faults-rebalance')
      const group = randomName('g')
      const count = 9
      // The first three messages (one per partition) fail their first attempt in A and wait 8 s
      // for their retry, holding back their partitions: B joins meanwhile.
      const a = new WorkerProcess('A', workerConfig('kafka', topic, group, { delayMs: 10, concurrency: 5, retryDelay: 8_000, failFirst: [0, 1, 2] }))
      await a.ready()
      messaging = createMessaging({ ...faultOptions('kafka'), logger: false })
      const ids = await publishJobs(messaging, topic, count)
      await a.until(w => w.of('fail').length >= 3, 'the first three messages failed once and wait')

      const b = new WorkerProcess('B', workerConfig('kafka', topic, group, { delayMs: 10, concurrency: 5 }))
      await b.ready()
      await a.until(w => rejoinedHolding(w) > 0, 'A rejoined the group while messages waited for their retry')
      expect(a.of('done').filter(l => [0, 1, 2].includes(l.n!)), 'retries done before the rebalance').to.deep.equal([])
      await b.until(() => tally([a, b]).handled.size === count, `all ${count} handled`, 40_000)
      await drained(messaging, group, [topic])
      trace([a, b])

      const { handled, duplicates } = tally([a, b])
      expect([...ids.values()].every(id => handled.has(id))).to.equal(true)
      expect(describeOverlaps([a, b]), 'messages held by two members at once').to.equal('')
      this.test!.title += ` [A: ${a.finished().size}, B: ${b.finished().size}, ${duplicates} duplicate(s)]`
    })

    it('a member joins while handlers run: each message is handled by one member at a time, none lost', async function () {
      const topic = randomName('faults-rebalance')
      const group = randomName('g')
      // Enough that A still runs handlers when B has joined: A runs several per partition at once (lanes).
      const count = 40
      const a = new WorkerProcess('A', workerConfig('kafka', topic, group, { delayMs: 2_500, concurrency: 5 }))
      await a.ready()
      messaging = createMessaging({ ...faultOptions('kafka'), logger: false })
      const ids = await publishJobs(messaging, topic, count)
      await a.until(w => w.of('start').length >= 3, 'a handler running on each partition')

      const b = new WorkerProcess('B', workerConfig('kafka', topic, group, { delayMs: 2_500, concurrency: 5 }))
      await b.ready()
      await a.until(w => rejoinedHolding(w) > 0, 'A rejoined the group while handlers ran')
      await b.until(() => tally([a, b]).handled.size === count, `all ${count} handled`, 40_000)
      await drained(messaging, group, [topic])
      trace([a, b])

      const { handled, duplicates } = tally([a, b])
      expect([...ids.values()].every(id => handled.has(id))).to.equal(true)
      expect(describeOverlaps([a, b]), 'messages held by two members at once').to.equal('')
      this.test!.title += ` [A: ${a.finished().size}, B: ${b.finished().size}, ${duplicates} duplicate(s)]`
    })
  })
}
