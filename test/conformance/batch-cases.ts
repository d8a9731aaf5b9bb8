import { expect } from 'chai'
import { Type } from '@sinclair/typebox'
import {
  batchHandler, DLQ_HEADERS, HandlerError, messageHandler, NonRetriableError, type BatchItem, type Context, type Messaging, type MessagingOptions, type Runner
} from '../../lib/index.js'
import { eventually, randomName, sleep } from '../helpers.js'

/** What the conformance suite lends the batch cases: its messaging, runner and dead-letter reader, cleaned up after each test. */
export interface SuiteTools {
  messaging(extra?: MessagingOptions): Messaging
  start(m: Messaging, handlers: unknown[], extra?: { shutdownTimeout?: number }): Promise<Runner>
  deadLetters(m: Messaging, topic: string, group: string): Promise<Array<{ message: unknown, ctx: Context }>>
}

interface Job { id: number }

/** `batchHandler()` on one broker: gathering, per-item verdicts, dead letters, order and shutdown. */
export function batchCases (tools: SuiteTools): void {
  const { messaging, start, deadLetters } = tools

  /** Starts a plain handler in `group` and publishes a sentinel: resolves with every message it got up to the sentinel (what the group still had unacknowledged, then the sentinel). */
  async function leftInGroup (m: Messaging, topic: string, group: string): Promise<unknown[]> {
    const again: unknown[] = []
    await start(messaging(), [messageHandler({ topic, group }, async (message) => { again.push(message) })])
    await m.publishEvent('job', { id: -1 }, { topic, key: 'k0' })
    await eventually(() => again.some(a => (a as Job).id === -1), 'the sentinel')
    return again
  }

  describe('batch handler', function () {
    it('gathers up to maxBatchSize messages, one batch at a time, with per-key order and every item acknowledged', async function () {
      const m = messaging({ source: 'orders-service' })
      const topic = randomName()
      const group = randomName('g')
      const batches: Array<Array<BatchItem<Job>>> = []
      let running = 0
      let overlapped = false
      const runner = await start(m, [batchHandler({ topic, group, maxBatchSize: 10, maxWaitMs: 300 }, async (items: Array<BatchItem<Job>>) => {
        overlapped ||= running > 0
        running++
        batches.push(items)
        await sleep(20)
        running--
      })])
      const keys = ['k1', 'k2', 'k3']
      const sent = await Promise.all([...Array(30).keys()].map(async id => await m.publishEvent('job', { id }, { topic, key: keys[id % 3], headers: { 'x-n': String(id) } })))
      await eventually(() => batches.flat().length === 30, 'all thirty handled')
      expect(overlapped, 'two batches ran at once').to.equal(false)
      expect(Math.max(...batches.map(b => b.length))).to.be.at.most(10)
      expect(batches.length, 'messages were gathered, not handed one by one').to.be.below(30)
      const items = batches.flat()
      for (const [i, key] of keys.entries()) {
        expect(items.filter(it => it.key === key).map(it => it.message.id), key).to.deep.equal([...Array(10).keys()].map(k => k * 3 + i))
      }
      const first = items.find(it => it.message.id === 4)!
      expect(first.topic).to.equal(topic)
      expect(first.attempt).to.equal(1)
      expect(first.headers['x-n']).to.equal('4')
      expect(first.event).to.deep.equal(sent[4])
      expect(first.messageId).to.be.a('string').and.not.equal('')
      await runner.stop()
      expect(await leftInGroup(m, topic, group), 'every item was acknowledged').to.deep.equal([{ id: -1 }])
    })

    it('messages of one key fill one batch, in order (they are not handed over one at a time)', async function () {
      const m = messaging()
      const topic = randomName()
      const batches: number[][] = []
      await start(m, [batchHandler({ topic, group: randomName('g'), maxBatchSize: 10, maxWaitMs: 10_000 }, async (items: Array<BatchItem<Job>>) => {
        batches.push(items.map(i => i.message.id))
      })])
      await Promise.all([...Array(10).keys()].map(async id => await m.publishEvent('job', { id }, { topic, key: 'one' })))
      await eventually(() => batches.length > 0, 'the batch', 20_000)
      expect(batches[0]).to.deep.equal([...Array(10).keys()])
    })

    it('ctx.fail(i, err) settles items one by one: a failed item is retried alone, a NonRetriableError is dead-lettered, a schema-invalid message never joins a batch', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      const seen: Array<{ id: number, attempt: number }> = []
      await start(m, [batchHandler({ topic, group, schema: Type.Object({ id: Type.Number() }), maxBatchSize: 20, maxWaitMs: 200, retryDelay: 20 }, async (items, ctx) => {
        items.forEach((item, i) => {
          seen.push({ id: item.message.id, attempt: item.attempt })
          if (item.message.id === 2 && item.attempt === 1) ctx.fail(i, new Error('row locked'))
          if (item.message.id === 4) ctx.fail(item, new NonRetriableError('order 4 is cancelled'))
        })
      })])
      await m.producer.send(topic, { id: 'not a number' }, { key: 'bad' })
      await Promise.all([1, 2, 3, 4, 5].map(async id => await m.publishEvent('job', { id }, { topic, key: `k${id}` })))
      await eventually(() => dead.length === 2 && seen.some(s => s.id === 2 && s.attempt === 2), 'the retry and both dead letters')
      // A sentinel: once it is handled, no other attempt is still to come.
      await m.publishEvent('job', { id: 0 }, { topic, key: 'k2' })
      await eventually(() => seen.some(s => s.id === 0), 'the sentinel')
      const attemptsOf = (id: number): number[] => seen.filter(s => s.id === id).map(s => s.attempt)
      expect(attemptsOf(1)).to.deep.equal([1])
      expect(attemptsOf(2)).to.deep.equal([1, 2])
      expect(attemptsOf(3)).to.deep.equal([1])
      expect(attemptsOf(4)).to.deep.equal([1])
      expect(attemptsOf(5)).to.deep.equal([1])
      const reasons = dead.map(d => d.ctx.headers[DLQ_HEADERS.reason]!)
      expect(reasons.find(r => r.includes('order 4 is cancelled')), 'the NonRetriableError').to.not.equal(undefined)
      expect(dead.find(d => (d.message as { id: unknown }).id === 4)!.ctx.headers[DLQ_HEADERS.attempts]).to.equal('1')
      const invalid = dead.find(d => (d.message as { id: unknown }).id === 'not a number')
      expect(invalid, 'the schema-invalid message').to.not.equal(undefined)
      expect(invalid!.ctx.headers[DLQ_HEADERS.reason]).to.contain('/id')
    })

    it('a batch that throws fails every item: each is retried, then dead-lettered with the reason and its attempts', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      const calls: number[][] = []
      await start(m, [batchHandler({ topic, group, maxBatchSize: 10, maxWaitMs: 200, maxRetries: 1, retryDelay: 20, backoff: 'fixed' }, async (items: Array<BatchItem<Job>>) => {
        calls.push(items.map(i => i.attempt))
        throw new Error('warehouse API down')
      })])
      await Promise.all([1, 2, 3].map(async id => await m.publishEvent('job', { id }, { topic, key: `k${id}` })))
      await eventually(() => dead.length === 3, 'three dead letters')
      expect(calls.flat().sort()).to.deep.equal([1, 1, 1, 2, 2, 2])
      expect(dead.map(d => (d.message as Job).id).sort()).to.deep.equal([1, 2, 3])
      for (const d of dead) {
        expect(d.ctx.headers[DLQ_HEADERS.reason]).to.equal('Error: warehouse API down')
        expect(d.ctx.headers[DLQ_HEADERS.attempts]).to.equal('2')
      }
    })

    it('a batch past its timeout is aborted through ctx.signal and its items are retried', async function () {
      const m = messaging()
      const topic = randomName()
      const runs: Array<{ attempts: number[], aborted: boolean }> = []
      await start(m, [batchHandler({ topic, group: randomName('g'), maxBatchSize: 2, maxWaitMs: 200, timeout: 100, retryDelay: 10 }, async (items: Array<BatchItem<Job>>, ctx) => {
        const run = { attempts: items.map(i => i.attempt), aborted: false }
        runs.push(run)
        if (items[0]!.attempt > 1) return
        await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => { run.aborted = true; resolve() }))
      })])
      await Promise.all([1, 2].map(async id => await m.publishEvent('job', { id }, { topic, key: 'k' })))
      await eventually(() => runs.flatMap(r => r.attempts).filter(a => a === 2).length === 2, 'both retried')
      expect(runs[0]).to.deep.equal({ attempts: [1, 1], aborted: true })
    })

    it('ctx.fail with an index outside the batch throws a HandlerError naming the range', async function () {
      const m = messaging()
      const topic = randomName()
      const errors: unknown[] = []
      await start(m, [batchHandler({ topic, group: randomName('g'), maxWaitMs: 10 }, async (_items, ctx) => {
        try {
          ctx.fail(5, new Error('no such item'))
        } catch (err) {
          errors.push(err)
        }
      })])
      await m.publishEvent('job', { id: 1 }, { topic })
      await eventually(() => errors.length === 1, 'the call')
      expect(errors[0]).to.be.instanceOf(HandlerError)
      expect((errors[0] as Error).message).to.equal('ctx.fail(item, error): item must be an index from 0 to 0 or one of this batch\'s items, got 5')
    })

    it('stop() drains: the running batch finishes and is acknowledged, what was gathered runs at once, nothing is dead-lettered or delivered again', async function () {
      const m = messaging()
      const topic = randomName()
      const group = randomName('g')
      const dead = await deadLetters(m, topic, group)
      const handled: number[] = []
      let release: () => void = () => {}
      const gate = new Promise<void>(resolve => { release = resolve })
      let started = false
      const runner = await start(m, [batchHandler({ topic, group, maxBatchSize: 2, maxWaitMs: 60_000 }, async (items: Array<BatchItem<Job>>) => {
        started = true
        await gate
        handled.push(...items.map(i => i.message.id))
      })], { shutdownTimeout: 20_000 })
      await Promise.all([1, 2, 3].map(async id => await m.publishEvent('job', { id }, { topic, key: 'k' })))
      await eventually(() => started, 'the first batch to start')
      // The third message gathers behind the running batch; alone, it would wait a minute for its batch to fill.
      await sleep(1000)
      const stopped = runner.stop()
      release()
      await stopped
      expect(handled).to.deep.equal([1, 2, 3])
      expect(await leftInGroup(m, topic, group), 'all three were acknowledged').to.deep.equal([{ id: -1 }])
      expect(dead).to.have.length(0)
    })
  })
}
