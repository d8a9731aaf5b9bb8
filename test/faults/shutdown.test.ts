/**
 * SIGTERM under load: a worker stopped while handlers run lets them finish within
 * `shutdownTimeout` and acknowledges them, dead-letters nothing because of the shutdown
 * (messages waiting for a retry are given back), and leaves what it had not started to the
 * next worker of the group.
 */
import { expect } from 'chai'
import { createMessaging, messageHandler, startConsumers, type Context, type Messaging, type Runner } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, eventually, randomName, sleep } from '../helpers.js'
import { deadLetterCount, drained, faultOptions, publishJobs, queuesOf, tally, workerConfig } from './fault-setup.js'
import { WorkerProcess } from './worker-process.js'

const COUNT = 200
const SHUTDOWN_TIMEOUT = 5_000

const KINDS = (['kafka', 'rabbitmq', 'redis'] as const).filter(k => brokerSelected(k))

for (const kind of KINDS) {
  describe(`faults: SIGTERM under load (${kind})`, function () {
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

    it(`in-flight handlers finish and are acknowledged, retries waiting are given back, nothing is dead-lettered, the next worker gets the rest (${COUNT} messages)`, async function () {
      const topic = randomName('faults-term')
      const group = randomName('g')
      queues.push(...queuesOf(topic, group))
      const config = workerConfig(kind, topic, group, { delayMs: 20, concurrency: 5, shutdownTimeout: SHUTDOWN_TIMEOUT })
      // In A, two early messages fail their first attempt and wait 10 s for their retry: the SIGTERM
      // finds them waiting (on Kafka each holds back its partition meanwhile; the third one flows).
      // Its handlers take 60 ms, so that the signal surely lands while some run.
      const a = new WorkerProcess('A', { ...config, delayMs: 60, retryDelay: 10_000, failFirst: [9, 19] })
      await a.ready()
      messaging = createMessaging({ ...faultOptions(kind), logger: false })
      const ids = await publishJobs(messaging, topic, COUNT)

      // A handler whose start arrived less than 20 ms ago has 40 ms to go when the signal lands.
      // Waiting: both failures printed by the handler and Herald's warning for each (it comes a moment after the handler's line).
      const waitingForRetry = (w: WorkerProcess): boolean => w.of('fail').length === 2 && w.of('log').filter(l => String(l.msg).startsWith('handler failed')).length === 2
      await a.until(w => w.finished().size >= 40 && waitingForRetry(w) && w.runningAttempts().some(s => Date.now() - w.receivedAt.get(s)! < 20), '40 messages handled, 2 waiting for their retry, and a handler just started', 20_000, 2)
      const signalled = Date.now()
      const linesBefore = a.lines.length
      a.kill('SIGTERM')
      const exit = await a.exited(SHUTDOWN_TIMEOUT + 5_000)
      const tookMs = exit.at - signalled
      // Herald stops, closes the messaging, then lets the signal end the process as it would have without it.
      expect(exit.signal === 'SIGTERM' || exit.code === 0, `exit ${JSON.stringify(exit)}${a.describe()}`).to.equal(true)
      expect(tookMs, 'time from SIGTERM to exit').to.be.below(SHUTDOWN_TIMEOUT)

      const startedA = a.started()
      const finishedA = a.finished()
      // Running at the signal: its start arrived before the signal was sent, its end after (the order lines arrive in, not the clocks).
      const startedBefore = a.lines.slice(0, linesBefore).filter(l => l.ev === 'start')
      const inFlight = a.lines.slice(linesBefore).filter(l => l.ev === 'done' && startedBefore.some(s => s.id === l.id && s.attempt === l.attempt))
      expect(inFlight.length, 'handlers running when SIGTERM came and finished after it').to.be.greaterThan(0)
      expect(a.runningAttempts(), 'handler attempts A started and did not finish').to.deep.equal([])
      const waiting = [...startedA].filter(id => !finishedA.has(id))
      expect(waiting.length, 'messages waiting for their retry at SIGTERM').to.be.greaterThan(0)
      expect(a.of('aborted'), 'handlers aborted by the shutdown').to.deep.equal([])
      expect(a.of('log').filter(l => l.msg === 'message dead-lettered'), 'dead letters logged by A').to.deep.equal([])
      expect(finishedA.size, 'A stopped half-way').to.be.below(COUNT)

      const b = new WorkerProcess('B', config)
      await b.ready()
      await b.until(() => tally([a, b]).handled.size === COUNT, `all ${COUNT} messages handled by A or B`, 30_000)
      // Anything A left unsettled has come back to B and been handled once the group has nothing left.
      await drained(messaging, group, [topic])

      // A shutdown is not a problem: nothing to warn about in A from the signal on, nor in B.
      const problems = (w: WorkerProcess, from = 0): string[] => w.lines.slice(from).filter(l => l.ev === 'log' && (l.level === 'warn' || l.level === 'error')).map(l => `${w.name}: ${l.level} ${l.msg}`)
      expect([...problems(a, linesBefore), ...problems(b)], 'warnings and errors').to.deep.equal([])
      const handled = tally([a, b]).handled
      expect([...ids.values()].every(id => handled.has(id))).to.equal(true)
      const again = [...b.started()].filter(id => finishedA.has(id))
      expect(again, 'messages A finished delivered again to B').to.deep.equal([])
      for (const id of waiting) expect(b.finished().has(id), `message ${id}, waiting for its retry in A, handled by B`).to.equal(true)
      expect(b.of('log').filter(l => l.msg === 'message dead-lettered'), 'dead letters logged by B').to.deep.equal([])
      expect(await deadLetterCount(kind, topic, group), 'dead letters').to.equal(0)
      this.test!.title += ` [A: ${finishedA.size} (${inFlight.length} in flight, ${waiting.length} waiting for a retry at SIGTERM), B: ${b.finished().size}, stop took ${tookMs} ms]`
    })
  })
}

if (brokerSelected('memory')) {
  describe('faults: stop under load (memory, in-process)', function () {
    this.timeout(30_000)

    it(`runner.stop() lets in-flight handlers finish, gives back retries waiting, dead-letters nothing, and leaves the rest to the next runner (${COUNT} messages)`, async function () {
      const messaging = createMessaging({ broker: 'memory', logger: false })
      const topic = randomName('faults-term')
      const group = randomName('g')
      const log: Array<{ runner: string, ev: 'start' | 'done' | 'fail', id: string, at: number }> = []
      const of = (runner: string, ev: string): Set<string> => new Set(log.filter(l => l.runner === runner && l.ev === ev).map(l => l.id))
      const handlerFor = (runner: string, failFirst: number[]) => messageHandler({ topic, group, concurrency: 5, retryDelay: 3_000 }, async (data: unknown, ctx: Context) => {
        const id = ctx.event!.id
        log.push({ runner, ev: 'start', id, at: Date.now() })
        if (failFirst.includes((data as { n: number }).n) && ctx.attempt === 1) {
          log.push({ runner, ev: 'fail', id, at: Date.now() })
          throw new Error('planned failure')
        }
        await sleep(60)
        log.push({ runner, ev: 'done', id, at: Date.now() })
      })
      const deadLetters: unknown[] = []
      const runners: Runner[] = []
      try {
        runners.push(await startConsumers({
          messaging,
          signals: false,
          handlers: [messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq-reader') }, async (message: unknown) => { deadLetters.push(message) })]
        }))
        const a = await startConsumers({ messaging, handlers: [handlerFor('A', [9, 19])], signals: false, shutdownTimeout: SHUTDOWN_TIMEOUT })
        runners.push(a)
        const ids = await publishJobs(messaging, topic, COUNT)
        await eventually(() => of('A', 'done').size >= 40 && of('A', 'start').size > of('A', 'done').size + of('A', 'fail').size, '40 handled and handlers running', 15_000, 1)
        const started = Date.now()
        await a.stop()
        expect(Date.now() - started).to.be.below(SHUTDOWN_TIMEOUT)
        const finishedA = of('A', 'done')
        const waiting = [...of('A', 'fail')].filter(id => !finishedA.has(id))
        expect(log.filter(l => l.runner === 'A' && l.ev === 'done' && l.at >= started).length, 'handlers running at stop() that finished').to.be.greaterThan(0)
        expect([...of('A', 'start')].filter(id => !finishedA.has(id) && !waiting.includes(id)), 'started in A and neither finished nor waiting').to.deep.equal([])
        expect(waiting).to.have.length(2)

        runners.push(await startConsumers({ messaging, handlers: [handlerFor('B', [])], signals: false }))
        await eventually(() => new Set(log.filter(l => l.ev === 'done').map(l => l.id)).size === COUNT, `all ${COUNT} handled`)
        await drained(messaging, group, [topic])
        expect([...of('B', 'start')].filter(id => finishedA.has(id)), 'finished in A, delivered again to B').to.deep.equal([])
        for (const id of waiting) expect(of('B', 'done').has(id)).to.equal(true)
        expect([...ids.values()].every(id => finishedA.has(id) || of('B', 'done').has(id))).to.equal(true)
        expect(deadLetters).to.deep.equal([])
      } finally {
        for (const r of runners.reverse()) await r.stop()
        await messaging.close()
      }
    })
  })
}
