import { expect } from 'chai'
import {
  createMessaging, DLQ_HEADERS, type HeraldError, messageHandler, NonRetriableError, REPLAY_HEADERS, startConsumers,
  type Context, type Messaging, type Runner
} from '../lib/index.js'
import type { Broker } from '../lib/brokers/broker.js'
import { cleanUpRun } from './cleanup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from './helpers.js'

const NOT_UTF8 = Buffer.from([0xff, 0xfe, 0x00])

interface Seen { id: string | undefined, key: string | undefined, headers: Record<string, string> }

for (const kind of selectedBrokers()) {
  describe(`dead letters: ${kind}`, function () {
    this.timeout(60_000)
    const open: Array<Messaging | Runner> = []
    const queues: string[] = []
    /** Kafka keeps order per partition only, and these keys land on different partitions. */
    // Messages of different keys are handled side by side, so they are dead-lettered in any order: compare sorted.
    const inOrder = <T>(items: T[]): T[] => [...items].sort()

    afterEach(async function () {
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
    })
    after(async function () { await cleanUpRun(kind, queues) })

    /**
     * Two groups on one topic: `failing` dead-letters every message whose key is in
     * `failingKeys` (and the body that is not UTF-8), `other` handles everything. Three
     * events (k1, k2, k3) and one body that is not UTF-8 are published.
     */
    async function scene () {
      const m = createMessaging(brokerOptions(kind))
      open.push(m)
      const topic = randomName()
      const failing = randomName('failing')
      const other = randomName('other')
      const failingKeys = new Set(['k1', 'k2', 'k3'])
      const handled: Seen[] = []
      const otherSeen: Seen[] = []
      const seen = (ctx: Context): Seen => ({ id: ctx.event?.id, key: ctx.key, headers: ctx.headers })
      const runner = await startConsumers({
        messaging: m,
        signals: false,
        handlers: [
          messageHandler({ topic, group: failing, maxRetries: 0 }, async (_data, ctx) => {
            if (failingKeys.has(ctx.key ?? '')) throw new NonRetriableError(`boom ${ctx.key ?? ''}`)
            handled.push(seen(ctx))
          }),
          messageHandler({ topic, group: other, maxRetries: 0 }, async (_data, ctx) => { otherSeen.push(seen(ctx)) })
        ]
      })
      open.push(runner)
      queues.push(`${topic}.${failing}`, `${topic}.${failing}.dlq`, `${topic}.${other}`, `${topic}.${other}.dlq`)
      const events = []
      for (const key of ['k1', 'k2', 'k3']) events.push(await m.publishEvent('order.placed', { key, note: 'x'.repeat(100) }, { topic, key }))
      const [err] = await (await m.broker()).publish([{ topic, value: NOT_UTF8, key: 'bin', headers: {} }])
      expect(err).to.equal(undefined)
      const letters = m.deadLetters({ topic, group: failing })
      await eventually(async () => (await letters.list()).length === 4, 'the four dead letters')
      await eventually(() => otherSeen.length === 3, 'the other group to handle the three events')
      return { m, topic, failing, other, failingKeys, handled, otherSeen, events, letters }
    }

    it('list shows each letter (reason, attempts, event, size, preview, hex for a body that is not UTF-8) and consumes nothing', async function () {
      const { letters, events, topic, failing } = await scene()
      const list = await letters.list()
      expect(inOrder(list.map(l => l.key))).to.deep.equal(inOrder(['k1', 'k2', 'k3', 'bin']))
      // Oldest first (Kafka: per partition).
      if (kind !== 'kafka') expect(list.map(l => l.failedAt)).to.deep.equal(list.map(l => l.failedAt).sort())
      const first = list.find(l => l.key === 'k1')
      expect(first!.reason).to.equal('NonRetriableError: boom k1')
      expect(first!.attempts).to.equal(1)
      expect(first!.topic).to.equal(topic)
      expect(first!.group).to.equal(failing)
      expect(Date.parse(first!.failedAt!)).to.be.a('number').and.not.NaN
      expect(first!.eventName).to.equal('order.placed')
      expect(first!.eventId).to.equal(events[0]!.id)
      expect(first!.size).to.be.above(100)
      expect(first!.preview.length).to.be.at.most(80)
      expect(first!.preview.startsWith('{"id":"')).to.equal(true)
      expect(first!.replayCount).to.equal(0)
      expect(new Set(list.map(l => l.id)).size).to.equal(4)
      const bin = list.find(l => l.key === 'bin')!
      expect(bin.reason).to.match(/not valid UTF-8/)
      expect(bin.preview).to.equal('hex:fffe00')
      expect(bin.size).to.equal(3)
      expect(bin.eventName).to.equal(undefined)
      // Reading consumed nothing: the same letters, in the same order, again; limit cuts.
      expect(inOrder((await letters.list()).map(l => l.key))).to.deep.equal(inOrder(list.map(l => l.key)))
      expect(await letters.list({ limit: 2 })).to.have.length(2)
      expect(await letters.count()).to.equal(4)
    })

    it('purge: a dry run counts by reason, a filter narrows, and a purge empties', async function () {
      const { letters } = await scene()
      const dry = await letters.purge({ dryRun: true })
      expect(dry).to.deep.include({ dryRun: true, count: 4 })
      expect(dry.byReason['NonRetriableError: boom k2']).to.equal(1)
      expect(await letters.list()).to.have.length(4)
      expect((await letters.purge({ filter: 'no such reason' })).count).to.equal(0)
      expect((await letters.purge({ filter: 'boom k2' })).count).to.equal(1)
      expect(inOrder((await letters.list()).map(l => l.key))).to.deep.equal(inOrder(['k1', 'k3', 'bin']))
      expect(await letters.count()).to.equal(3)
      expect((await letters.purge()).count).to.equal(3)
      expect(await letters.list()).to.deep.equal([])
      expect(await letters.count()).to.equal(0)
    })

    it('replay reaches the failing group only, unchanged but for its headers; a second replay replays nothing; maxReplays refuses', async function () {
      const { m, topic, letters, failingKeys, handled, otherSeen, events } = await scene()
      failingKeys.delete('k1')
      failingKeys.delete('k2')
      const dry = await letters.replay({ dryRun: true, filter: 'boom' })
      expect(dry).to.deep.equal({ dryRun: true, count: 3, byReason: { 'NonRetriableError: boom k1': 1, 'NonRetriableError: boom k2': 1, 'NonRetriableError: boom k3': 1 }, refused: [] })
      expect(await letters.list()).to.have.length(4)

      const done = await letters.replay({ filter: 'boom', rate: 100 })
      expect(done.count).to.equal(3)
      await eventually(() => handled.length === 2, 'the failing group to handle k1 and k2')
      expect(inOrder(handled.map(h => h.id))).to.deep.equal(inOrder([events[0]!.id, events[1]!.id]))
      const k1 = handled.find(h => h.key === 'k1')!
      expect(k1.id).to.equal(events[0]!.id)
      expect(k1.headers[REPLAY_HEADERS.count]).to.equal('1')
      expect(k1.headers[REPLAY_HEADERS.from]).to.equal(letters.destination)
      expect(k1.headers[DLQ_HEADERS.reason]).to.equal(undefined)
      // k3 failed again: dead-lettered once more, carrying its replay count.
      await eventually(async () => (await letters.list()).some(l => l.key === 'k3'), 'k3 dead-lettered again')
      const again = await letters.list()
      expect(inOrder(again.map(l => `${l.key ?? ''}:${l.replayCount}`))).to.deep.equal(['bin:0', 'k3:1'])

      // The other group saw nothing again: a marker published after the replay is the next thing it sees.
      await m.publishEvent('marker', {}, { topic, key: 'marker' })
      await eventually(() => otherSeen.some(s => s.key === 'marker'), 'the other group to see the marker')
      expect(inOrder(otherSeen.map(s => s.key))).to.deep.equal(inOrder(['k1', 'k2', 'k3', 'marker']))

      expect((await letters.replay({ filter: 'boom k1' })).count).to.equal(0)
      const refused = await letters.replay({ filter: 'boom', maxReplays: 1 })
      expect(refused.count).to.equal(0)
      expect(refused.refused).to.have.length(1)
      expect(refused.refused[0]!.reason).to.match(/replayed 1 times already \(maxReplays 1\)/)
      expect(inOrder((await letters.list()).map(l => l.key))).to.deep.equal(['bin', 'k3'])
    })

    it('a replay cut short resumes where it stopped: each letter reaches the group once', async function () {
      const { m, topic, letters, failingKeys, handled } = await scene()
      failingKeys.clear()
      expect((await letters.replay({ filter: 'boom', limit: 1 })).count).to.equal(1)
      expect(await letters.list()).to.have.length(3)
      expect((await letters.replay({ filter: 'boom' })).count).to.equal(2)
      await eventually(() => handled.length === 3, 'the three replayed letters to be handled')
      // Nothing more arrives for the group: the marker published now is the next thing it handles.
      await m.publishEvent('marker', {}, { topic, key: 'marker' })
      await eventually(() => handled.some(h => h.key === 'marker'), 'the marker')
      expect(handled.map(h => h.key).sort()).to.deep.equal(['k1', 'k2', 'k3', 'marker'])
      expect((await letters.list()).map(l => l.key)).to.deep.equal(['bin'])
    })
  })
}

describe('dead letters: an adapter of your own', function () {
  /** An adapter of the user's (kind "nats") over the embedded broker, with the dead-letter cursor it is given. */
  async function ownAdapter (deadLetters: Broker['deadLetters']): Promise<Messaging> {
    const inner = await createMessaging({ broker: 'memory', logger: false }).broker()
    const broker: Broker = {
      kind: 'nats',
      connect: async () => await inner.connect(),
      publish: async (messages) => await inner.publish(messages),
      subscribe: async (options, onDelivery) => await inner.subscribe(options, onDelivery),
      health: async () => ({ ok: true, broker: 'nats', detail: 'test' }),
      close: async () => await inner.close(),
      ...(deadLetters === undefined ? {} : { deadLetters })
    }
    return createMessaging({ broker, logger: false })
  }

  it('without deadLetters(), list, purge and replay reject with HERALD_UNSUPPORTED naming the adapter and the destination', async function () {
    const m = await ownAdapter(undefined)
    try {
      const letters = m.deadLetters({ topic: 'orders', group: 'billing' })
      for (const call of [async () => await letters.list(), async () => await letters.purge(), async () => await letters.replay()]) {
        const err = await call().then(() => undefined, (e: unknown) => e)
        expect((err as HeraldError).code).to.equal('HERALD_UNSUPPORTED')
        expect((err as Error).message).to.equal('the nats adapter cannot read dead letters (it has no deadLetters()); read "orders.billing.dlq" with a handler instead')
      }
    } finally {
      await m.close()
    }
  })

  it('a cursor without redeliver(): replay rejects with HERALD_UNSUPPORTED and the letters stay; list and purge work', async function () {
    const topic = randomName()
    const memory = createMessaging({ broker: 'memory', logger: false })
    const inner = await memory.broker()
    await inner.publish([{ topic: `${topic}.g.dlq`, value: Buffer.from('{}'), key: undefined, headers: { [DLQ_HEADERS.reason]: 'why' } }])
    const m = await ownAdapter(async (destination) => {
      const { read, remove, close } = await inner.deadLetters!(destination)
      return { read, remove, close }
    })
    try {
      const letters = m.deadLetters({ topic, group: 'g' })
      const err = await letters.replay().then(() => undefined, (e: unknown) => e)
      expect((err as HeraldError).code).to.equal('HERALD_UNSUPPORTED')
      expect((err as Error).message).to.match(/^the nats adapter cannot replay dead letters to one group only/)
      expect((await letters.list()).map(l => l.reason)).to.deep.equal(['why'])
      expect((await letters.purge()).count).to.equal(1)
    } finally {
      await m.close()
      await memory.close()
    }
  })
})

describe('dead letters: options', function () {
  it('a missing topic or group, or a bad limit, is a ConfigError that says what to give', async function () {
    const m = createMessaging({ broker: 'memory', logger: false })
    try {
      expect(() => m.deadLetters({ topic: '', group: 'g' })).to.throw(/topic: deadLetters\(\) needs the topic/)
      expect(() => m.deadLetters({ topic: 't' } as never)).to.throw(/group: deadLetters\(\) needs the group/)
      const err = await m.deadLetters({ topic: 't', group: 'g' }).list({ limit: 0 }).then(() => undefined, (e: unknown) => e)
      expect(String(err)).to.match(/limit: must be a whole number of at least 1, got 0/)
    } finally {
      await m.close()
    }
  })
})
