/**
 * The Broker contract (lib/brokers/broker.ts) as one suite that every adapter must pass,
 * Herald's own and a third party's: give it a way to make a connected `Broker` and the
 * features it has. It speaks only the contract (publish, subscribe, ack, release, close),
 * so it proves what the runner relies on, below the handler API that `suite.ts` tests.
 *
 * @example
 * import { brokerContract } from 'herald/test/conformance/broker-contract.js'
 * brokerContract({ name: 'my-broker', connect: async () => { const b = new MyBroker(); await b.connect(); return b }, features: { newGroupReadsHistory: true } })
 */
import { expect } from 'chai'
import type { Broker, Delivery, OutgoingMessage, Subscription } from '../../lib/brokers/broker.js'
import { HeraldError, isRetriable } from '../../lib/errors.js'
import { eventually, randomName } from '../helpers.js'

export interface BrokerContractFeatures {
  /** A group that subscribes after messages were published still gets them (not RabbitMQ: a group's queue starts empty). */
  newGroupReadsHistory: boolean
}

export interface BrokerContractTarget {
  name: string
  /** Makes a new, connected broker. Each test closes what it made. */
  connect: () => Promise<Broker>
  features: BrokerContractFeatures
  /** Removes what the suite created (topics, queues, streams), after all tests. */
  cleanUp?: (queues: string[]) => Promise<void>
}

const message = (topic: string, n: number, key?: string, headers: Record<string, string> = {}): OutgoingMessage => ({
  topic, value: Buffer.from(JSON.stringify({ n })), key, headers: { 'content-type': 'application/json', 'x-n': String(n), ...headers }
})

const numberOf = (d: Delivery): number => (JSON.parse(d.value.toString('utf8')) as { n: number }).n

export function brokerContract (target: BrokerContractTarget): void {
  describe(`broker contract: ${target.name}`, function () {
    this.timeout(60_000)
    const brokers: Broker[] = []
    const subscriptions: Subscription[] = []
    const queues: string[] = []

    async function broker (): Promise<Broker> {
      const b = await target.connect()
      brokers.push(b)
      return b
    }

    async function subscribe (b: Broker, group: string, topics: string[], onDelivery: (d: Delivery) => Promise<void>, extra: { maxInFlight?: number, deadLetterTopics?: string[] } = {}): Promise<Subscription> {
      const sub = await b.subscribe({ group, topics, maxInFlight: extra.maxInFlight ?? 10, deadLetterTopics: extra.deadLetterTopics ?? [] }, onDelivery)
      subscriptions.push(sub)
      for (const t of topics) queues.push(`${t}.${group}`)
      queues.push(...(extra.deadLetterTopics ?? []))
      return sub
    }

    /** Subscribes `group` to `topic`, publishes message 1 and resolves once it is handed over, unsettled. */
    async function holdOne (b: Broker, group: string, topic: string): Promise<{ sub: Subscription, held: Delivery }> {
      let held: Delivery | undefined
      const sub = await subscribe(b, group, [topic], async (d) => { held = d })
      await b.publish([message(topic, 1, 'k')])
      await eventually(() => held !== undefined, 'the delivery')
      return { sub, held: held! }
    }

    afterEach(async function () {
      await Promise.allSettled(subscriptions.splice(0).map(s => s.close()))
      await Promise.allSettled(brokers.splice(0).map(b => b.close()))
    })

    after(async function () {
      await target.cleanUp?.(queues)
    })

    it('publish answers one entry per message, in order, and a subscribed group gets body, key and headers unchanged', async function () {
      const b = await broker()
      const topic = randomName()
      const got: Delivery[] = []
      await subscribe(b, randomName('g'), [topic], async (d) => { got.push(d); await d.ack() })
      const bare: OutgoingMessage = { topic, value: Buffer.from('{"n":4,"name":"Zoë"}'), key: undefined, headers: {} }
      const results = await b.publish([message(topic, 1, 'k1', { 'x-note': 'grüße' }), message(topic, 2), message(topic, 3, 'k1'), bare])
      expect(results).to.deep.equal([undefined, undefined, undefined, undefined])
      await eventually(() => got.length === 4, 'four deliveries')
      const one = got.find(d => numberOf(d) === 1)!
      expect(one.topic).to.equal(topic)
      expect(one.key).to.equal('k1')
      expect(one.headers).to.deep.equal({ 'content-type': 'application/json', 'x-n': '1', 'x-note': 'grüße' })
      expect(got.find(d => numberOf(d) === 2)!.key).to.equal(undefined)
      const four = got.find(d => numberOf(d) === 4)!
      expect(four.value.toString('utf8')).to.equal('{"n":4,"name":"Zoë"}')
      expect(four.headers).to.deep.equal({})
      for (const d of got) {
        expect(d.redeliveries).to.equal(0)
        expect(d.id).to.be.a('string').and.not.equal('')
      }
      expect(new Set(got.map(d => d.id)).size, 'each delivery its own id').to.equal(4)
    })

    it('a group that subscribes after messages were published reads them from the earliest, in order (where the broker keeps history)', async function () {
      if (!target.features.newGroupReadsHistory) this.skip()
      const b = await broker()
      const topic = randomName()
      await b.publish([0, 1, 2].map(n => message(topic, n, 'same-key')))
      const got: number[] = []
      await subscribe(b, randomName('g'), [topic], async (d) => { got.push(numberOf(d)); await d.ack() })
      await eventually(() => got.length === 3, 'the three earlier messages')
      expect(got).to.deep.equal([0, 1, 2])
    })

    it('two groups each get every message; two subscriptions of one group share them, each message once', async function () {
      const b1 = await broker()
      const b2 = await broker()
      const topic = randomName()
      const shared = randomName('shared')
      const other: number[] = []
      const byMember: number[][] = [[], []]
      await subscribe(b1, shared, [topic], async (d) => { byMember[0]!.push(numberOf(d)); await d.ack() })
      await subscribe(b2, shared, [topic], async (d) => { byMember[1]!.push(numberOf(d)); await d.ack() })
      await subscribe(b1, randomName('other'), [topic], async (d) => { other.push(numberOf(d)); await d.ack() })
      const sent = Array.from({ length: 30 }, (_, i) => i)
      expect(await b1.publish(sent.map(n => message(topic, n, `key-${n}`)))).to.have.length(30)
      await eventually(() => other.length === 30 && byMember[0]!.length + byMember[1]!.length === 30, 'every message in both groups')
      expect([...other].sort((a, c) => a - c)).to.deep.equal(sent)
      expect([...byMember[0]!, ...byMember[1]!].sort((a, c) => a - c)).to.deep.equal(sent)
    })

    it('messages with the same key are delivered in the order they were published', async function () {
      const b = await broker()
      const topic = randomName()
      const got: number[] = []
      await subscribe(b, randomName('g'), [topic], async (d) => { got.push(numberOf(d)); await d.ack() }, { maxInFlight: 1 })
      for (let n = 0; n < 20; n++) await b.publish([message(topic, n, 'same-key')])
      await eventually(() => got.length === 20, 'twenty deliveries')
      expect(got).to.deep.equal(Array.from({ length: 20 }, (_, i) => i))
    })

    it('never hands over more than maxInFlight unsettled messages to one subscription, across its topics', async function () {
      const b = await broker()
      const topics = [randomName(), randomName()]
      const held: Delivery[] = []
      const got: Delivery[] = []
      let most = 0
      await subscribe(b, randomName('g'), topics, async (d) => {
        held.push(d)
        got.push(d)
        most = Math.max(most, held.length)
      }, { maxInFlight: 3 })
      await b.publish(topics.flatMap(t => Array.from({ length: 6 }, (_, n) => message(t, n, 'one-key'))))
      for (let settled = 0; settled < 12;) {
        await eventually(() => held.length > 0, 'a delivery')
        const d = held.shift()!
        await d.ack()
        settled++
      }
      expect(most).to.be.at.most(3)
      expect(most).to.be.at.least(1)
      // Each topic's messages in publish order.
      for (const t of topics) expect(got.filter(d => d.topic === t).map(numberOf)).to.deep.equal([0, 1, 2, 3, 4, 5])
    })

    it('a released message is delivered again to the same group, and acked messages are not', async function () {
      const b = await broker()
      const topic = randomName()
      const seen: Array<{ n: number, redeliveries: number }> = []
      await subscribe(b, randomName('g'), [topic], async (d) => {
        const n = numberOf(d)
        seen.push({ n, redeliveries: d.redeliveries })
        if (n === 1 && seen.filter(s => s.n === 1).length === 1) await d.release()
        else await d.ack()
      })
      await b.publish([message(topic, 1, 'a'), message(topic, 2, 'b')])
      await eventually(() => seen.filter(s => s.n === 1).length === 2, 'the released message again')
      // A sentinel published after it: once it arrives, nothing else was pending.
      await b.publish([message(topic, 99, 'b')])
      await eventually(() => seen.some(s => s.n === 99), 'the sentinel')
      expect(seen.filter(s => s.n === 2)).to.have.length(1)
      expect(seen.filter(s => s.n === 1).map(s => s.redeliveries), 'a release uses up no attempt').to.deep.equal([0, 0])
    })

    it('ack() and release() resolve and are idempotent: a second settle of a delivery does nothing', async function () {
      const b = await broker()
      const topic = randomName()
      const seen: number[] = []
      await subscribe(b, randomName('g'), [topic], async (d) => {
        seen.push(numberOf(d))
        await d.ack()
        await d.ack()
        await d.release()
      })
      await b.publish([message(topic, 1, 'k')])
      await eventually(() => seen.includes(1), 'the message')
      // A sentinel after it: the subscription still works (RabbitMQ would close the channel
      // on a second settle of one delivery tag) and the message did not come back before it.
      await b.publish([message(topic, 99, 'k')])
      await eventually(() => seen.includes(99), 'the sentinel')
      expect(seen).to.deep.equal([1, 99])
    })

    it('close() waits until every handed-over message is settled, and that message is not delivered again', async function () {
      const b = await broker()
      const topic = randomName()
      const group = randomName('g')
      const { sub, held } = await holdOne(b, group, topic)
      let closed = false
      const closing = sub.close().then(() => { closed = true })
      // A round trip to the broker: close() still waits for the held message.
      await b.publish([message(randomName('unrelated'), 0)]).catch(() => [])
      expect(closed).to.equal(false)
      await held.ack()
      await closing
      expect(closed).to.equal(true)

      const again: number[] = []
      await subscribe(b, group, [topic], async (d) => { again.push(numberOf(d)); await d.ack() })
      await b.publish([message(topic, 2, 'k')])
      await eventually(() => again.includes(2), 'the next message')
      expect(again).to.deep.equal([2])
    })

    it('a message released at shutdown (pause, release, close) goes to the next member of the group at once, with no attempt used', async function () {
      const b = await broker()
      const topic = randomName()
      const group = randomName('g')
      const { sub, held } = await holdOne(b, group, topic)
      await sub.pause()
      await held.release()
      await sub.close()
      // With the adapter's defaults (Redis reclaims an unsettled entry only after 30 s): only the release brings it back in time.
      const next: Delivery[] = []
      await subscribe(await broker(), group, [topic], async (d) => { next.push(d); await d.ack() })
      await eventually(() => next.length === 1, 'the released message at the next member')
      expect(numberOf(next[0]!)).to.equal(1)
      expect(next[0]!.redeliveries, 'a release uses up no attempt').to.equal(0)
    })

    it('pause() stops new deliveries while a handed-over message can still be acked; what came meanwhile goes to the next member', async function () {
      const b = await broker()
      const topic = randomName()
      const group = randomName('g')
      const held: Delivery[] = []
      const sub = await subscribe(b, group, [topic], async (d) => { held.push(d) })
      const watched: number[] = []
      await subscribe(b, randomName('watcher'), [topic], async (d) => { watched.push(numberOf(d)); await d.ack() })
      await b.publish([message(topic, 1, 'k')])
      await eventually(() => held.length === 1 && watched.includes(1), 'message 1 in both groups')
      await sub.pause()
      await b.publish([message(topic, 2, 'k')])
      // The other group got message 2: the broker handed it out, and not to the paused subscription.
      await eventually(() => watched.includes(2), 'message 2 in the other group')
      expect(held.map(numberOf)).to.deep.equal([1])
      await held[0]!.ack()
      await sub.close()
      const later: number[] = []
      await subscribe(b, group, [topic], async (d) => { later.push(numberOf(d)); await d.ack() })
      await b.publish([message(topic, 3, 'k')])
      await eventually(() => later.includes(3), 'the sentinel after it')
      expect(later).to.deep.equal([2, 3])
    })

    it('the dead-letter destinations of a subscription exist once subscribe resolves, and keep what arrives', async function () {
      const b = await broker()
      const topic = randomName()
      const group = randomName('g')
      const dlq = `${topic}.${group}.dlq`
      await subscribe(b, group, [topic], async (d) => { await d.ack() }, { deadLetterTopics: [dlq] })
      expect(await b.publish([message(dlq, 7, 'dead')])).to.deep.equal([undefined])
      if (!target.features.newGroupReadsHistory) return
      const got: number[] = []
      await subscribe(b, randomName('reader'), [dlq], async (d) => { got.push(numberOf(d)); await d.ack() })
      await eventually(() => got.includes(7), 'the dead letter, read by a group that came later')
    })

    it('keepAlive, where an adapter has it, can be called while a message waits and the message is then acked once', async function () {
      const b = await broker()
      const topic = randomName()
      const seen: number[] = []
      await subscribe(b, randomName('g'), [topic], async (d) => {
        seen.push(numberOf(d))
        await d.keepAlive?.()
        await d.ack()
      })
      await b.publish([message(topic, 1, 'k')])
      await b.publish([message(topic, 2, 'k')])
      await eventually(() => seen.includes(2), 'both messages')
      expect(seen).to.deep.equal([1, 2])
    })

    it('a closed broker refuses publish and subscribe with a non-retriable Herald error', async function () {
      const b = await broker()
      await b.close()
      const results = await b.publish([message(randomName(), 1)]).catch((err: unknown) => [err as Error])
      expect(results).to.have.length(1)
      expect(results[0]).to.be.instanceOf(HeraldError)
      expect(isRetriable(results[0])).to.equal(false)
      const refused = await b.subscribe({ group: randomName('g'), topics: [randomName()], maxInFlight: 1, deadLetterTopics: [] }, async (d) => { await d.ack() })
        .then(() => undefined, (err: unknown) => err)
      expect(refused).to.be.instanceOf(HeraldError)
      expect(isRetriable(refused)).to.equal(false)
    })

    it('health() says ok with a secret-free detail while connected', async function () {
      const b = await broker()
      const health = await b.health()
      expect(health.ok).to.equal(true)
      expect(health.broker).to.equal(b.kind)
      expect(health.detail).to.be.a('string')
    })
  })
}
