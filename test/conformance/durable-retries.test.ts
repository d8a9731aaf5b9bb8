// Durable retries (issue 11): a retry whose delay reaches `durableRetryAfter` is stored in the
// broker (RabbitMQ: a tier queue that dead-letters back to the group's queue; Redis: the
// group's due set, promoted into its retry stream; Kafka: the group's retry topic, held back
// until due; memory: a timer) and the original is acknowledged, so it holds no slot while it
// waits; it comes back when due with the next attempt number.
import { expect } from 'chai'
import { createMessaging, DLQ_HEADERS, messageHandler, RETRY_HEADERS, startConsumers, type Messaging, type Runner } from '../../lib/index.js'
import { retryQueueName, retryTier } from '../../lib/brokers/rabbitmq/rabbitmq-retries.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from '../helpers.js'
import { heldRetries } from '../support/retry-store.js'

interface Seen {
  n: number
  attempt: number
  at: number
  headers: Record<string, string>
}

for (const kind of selectedBrokers()) {
  describe(`durable retries: ${kind}`, function () {
    this.timeout(60_000)
    let m: Messaging
    const runners: Runner[] = []
    /** RabbitMQ queues the tests made, for the clean-up. */
    const queues: string[] = []

    async function start (handlers: unknown[]): Promise<void> {
      const runner = await startConsumers({ messaging: m, handlers, signals: false })
      runners.push(runner)
      for (const c of runner.consumers) for (const t of c.topics) queues.push(`${t}.${c.group}`, `${t}.${c.group}.dlq`)
    }

    beforeEach(function () { m = createMessaging(brokerOptions(kind)) })

    afterEach(async function () {
      for (const runner of runners.splice(0).reverse()) await runner.stop()
      await m.close()
    })

    after(async function () {
      await cleanUpRun(kind, queues)
    })

    it('a retry due after durableRetryAfter is acknowledged and kept by the broker, then handled once due with attempt 2 and its retry headers', async function () {
      const topic = randomName()
      const group = randomName('g')
      const delay = 3000
      queues.push(retryQueueName(topic, group, retryTier(delay)))
      const seen: Seen[] = []
      await start([messageHandler({ topic, group, retryDelay: delay, backoff: 'fixed', maxRetries: 1, durableRetryAfter: 1000 }, async (msg: unknown, ctx) => {
        seen.push({ n: (msg as { n: number }).n, attempt: ctx.attempt, at: Date.now(), headers: ctx.headers })
        if (ctx.attempt === 1) throw new Error('not yet')
      })])
      await m.publishEvent('job', { n: 1 }, { topic, key: 'k' })
      await eventually(() => seen.length === 1, 'the first attempt')
      if (kind !== 'memory') {
        await eventually(async () => await heldRetries(kind, topic, group, delay) === 1, 'the retry kept in the broker\'s retry store while it waits')
        expect(seen, 'not handled again while it is in the retry store').to.have.length(1)
        const broker = await m.broker()
        await eventually(async () => (await broker.lag!(group, [topic])).every(l => l.messages === 0), 'the original acknowledged (nothing left for the group on the topic)')
      }
      await eventually(() => seen.length === 2, 'the retry, once due', 30_000)
      const retry = seen[1]!
      expect(retry.attempt).to.equal(2)
      expect(retry.n).to.equal(1)
      expect(retry.headers[RETRY_HEADERS.attempt]).to.equal('2')
      expect(retry.headers[RETRY_HEADERS.reason]).to.equal('Error: not yet')
      const dueAt = Date.parse(retry.headers[RETRY_HEADERS.retryAt]!)
      expect(dueAt - seen[0]!.at, 'due one retryDelay after the failure').to.be.within(delay - 50, delay + 1000)
      expect(retry.at, 'handled at or after its due time, not before').to.be.at.least(dueAt)
      // Acknowledged once the handler returned, and on Kafka committed with the acks of the next
      // few milliseconds: the store empties once that lands, not when the handler starts.
      if (kind !== 'memory') await eventually(async () => await heldRetries(kind, topic, group, delay) === 0, 'the retry store to empty once the retry was handled')
    })

    it('fifty retries waiting in the broker hold no slot: with concurrency 1 a message published after them is handled before any of them comes back', async function () {
      const topic = randomName()
      const group = randomName('g')
      const delay = 5000
      queues.push(retryQueueName(topic, group, retryTier(delay)))
      const seen: Seen[] = []
      let secondAttemptsWhenSentinel: number | undefined
      await start([messageHandler({ topic, group, concurrency: 1, retryDelay: delay, backoff: 'fixed', maxRetries: 1, durableRetryAfter: 1000 }, async (msg: unknown, ctx) => {
        const n = (msg as { n: number }).n
        seen.push({ n, attempt: ctx.attempt, at: Date.now(), headers: ctx.headers })
        if (n === -1) secondAttemptsWhenSentinel = seen.filter(s => s.attempt === 2).length
        else if (ctx.attempt === 1) throw new Error('later')
      })])
      for (let n = 0; n < 50; n++) await m.publishEvent('job', { n }, { topic, key: `k${n}` })
      await m.publishEvent('job', { n: -1 }, { topic, key: 'sentinel' })
      await eventually(() => secondAttemptsWhenSentinel !== undefined, 'the message published after the fifty failing ones', 30_000)
      expect(seen.filter(s => s.attempt === 1 && s.n >= 0), 'first attempts before the sentinel').to.have.length(50)
      expect(secondAttemptsWhenSentinel, 'retries that came back before the sentinel ran').to.equal(0)
      await eventually(() => seen.filter(s => s.attempt === 2).length === 50, 'the fifty retries, once due', 45_000)
      expect(new Set(seen.filter(s => s.attempt === 2).map(s => s.n)).size).to.equal(50)
    })

    it('maxRetries spans retries waiting in the process and in the broker: the last failure is dead-lettered with the count of every attempt', async function () {
      const topic = randomName()
      const group = randomName('g')
      queues.push(retryQueueName(topic, group, retryTier(1000)))
      const letters: Array<{ headers: Record<string, string> }> = []
      await start([messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('dlq-reader'), raw: true }, async (_body, ctx) => { letters.push({ headers: ctx.headers }) })])
      const seen: Seen[] = []
      // Delays 500 ms (in the process), then 1000 ms (in the broker); three attempts in all.
      await start([messageHandler({ topic, group, retryDelay: 500, maxRetries: 2, durableRetryAfter: 1000 }, async (msg: unknown, ctx) => {
        seen.push({ n: (msg as { n: number }).n, attempt: ctx.attempt, at: Date.now(), headers: ctx.headers })
        throw new Error(`attempt ${ctx.attempt} failed`)
      })])
      await m.publishEvent('job', { n: 7 }, { topic })
      await eventually(() => letters.length === 1, 'the dead letter', 30_000)
      expect(seen.map(s => s.attempt)).to.deep.equal([1, 2, 3])
      expect(seen[1]!.headers[RETRY_HEADERS.attempt], 'the in-process retry carries no retry header').to.equal(undefined)
      expect(seen[2]!.headers[RETRY_HEADERS.attempt]).to.equal('3')
      expect(seen[2]!.headers[RETRY_HEADERS.reason]).to.equal('Error: attempt 2 failed')
      const letter = letters[0]!.headers
      expect(letter[DLQ_HEADERS.attempts]).to.equal('3')
      expect(letter[DLQ_HEADERS.reason]).to.equal('Error: attempt 3 failed')
      for (const name of Object.values(RETRY_HEADERS)) expect(letter[name], `${name} on the dead letter`).to.equal(undefined)
    })
  })
}
