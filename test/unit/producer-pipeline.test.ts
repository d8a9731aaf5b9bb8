import { expect } from 'chai'
import type { Broker, BrokerHealth, OutgoingMessage, Subscription } from '../../lib/brokers/broker.js'
import { BrokerError } from '../../lib/errors.js'
import type { ProducerSpool } from '../../lib/outbox/outbox.js'
import { Producer, type ProducerSettings } from '../../lib/producer.js'

/** One publish() call of the held broker, answered when the test says so. */
interface Call {
  readonly topics: string[]
  /** How many earlier publish() calls were still unanswered when this one was made. */
  readonly unansweredBefore: number
  answer(results: Array<Error | undefined>): void
  /** Says message `i` is acknowledged before the whole call is answered (`onAcknowledged`). */
  acknowledge(i: number): void
}

/**
 * A Broker of the test's own (Herald's contract, not a client library): publish() resolves
 * only when the test answers the call, so the test sees what the producer hands over while
 * earlier batches wait for their acknowledgement.
 */
class HeldBroker implements Broker {
  readonly kind = 'held'
  readonly maxPublishesInFlight: number | undefined
  readonly calls: Call[] = []
  #unanswered = 0
  #waiters: Array<() => void> = []

  constructor (maxPublishesInFlight: number | undefined) {
    this.maxPublishesInFlight = maxPublishesInFlight
  }

  async connect (): Promise<void> {}

  async publish (messages: OutgoingMessage[], onAcknowledged?: (index: number) => void): Promise<Array<Error | undefined>> {
    return await new Promise(resolve => {
      const unansweredBefore = this.#unanswered++
      let answered = false
      this.calls.push({
        topics: messages.map(m => m.value.toString()),
        unansweredBefore,
        answer: (results) => {
          if (answered) return
          answered = true
          this.#unanswered--
          resolve(results)
        },
        acknowledge: (i) => { onAcknowledged?.(i) }
      })
      for (const wake of this.#waiters.splice(0)) wake()
    })
  }

  /** Resolves once publish() was called `n` times. */
  async called (n: number): Promise<Call> {
    while (this.calls.length < n) await new Promise<void>(resolve => this.#waiters.push(resolve))
    return this.calls[n - 1]!
  }

  async subscribe (): Promise<Subscription> { throw new Error('not used') }
  async health (): Promise<BrokerHealth> { return { ok: true, broker: 'held', detail: 'test double' } }
  async close (): Promise<void> {}
}

class ListSpool implements ProducerSpool {
  readonly appended: string[] = []
  get active (): boolean { return this.appended.length > 0 }
  async append (message: OutgoingMessage): Promise<void> { this.appended.push(message.value.toString()) }
}

const settings = (over: Partial<ProducerSettings> = {}): ProducerSettings => ({
  source: 'test', defaultTopic: 'events', publishTimeout: 60_000, linger: 0, maxBatchSize: 100, maxMessageBytes: 1_000_000, tracing: false, ...over
})

/** Sends `body` (a JSON string) and records when it is answered. */
function sendTracked (producer: Producer, body: string, answered: string[]): Promise<void> {
  return producer.send('events', body).then(() => { answered.push(body) })
}

describe('unit: producer batches in flight (Broker.maxPublishesInFlight)', function () {
  it('maxPublishesInFlight 2: a second batch is handed to publish() before the first is answered; sends are answered in order', async function () {
    const broker = new HeldBroker(2)
    const producer = new Producer(async () => broker, settings())
    const answered: string[] = []
    const a = sendTracked(producer, 'a', answered)
    const first = await broker.called(1)
    const b = sendTracked(producer, 'b', answered)
    const second = await broker.called(2)
    expect(second.unansweredBefore).to.equal(1)
    expect([first.topics, second.topics]).to.deep.equal([['"a"'], ['"b"']])
    // The later batch is acknowledged first: its send still waits for the earlier one.
    second.answer([undefined])
    first.answer([undefined])
    await Promise.all([a, b])
    expect(answered).to.deep.equal(['a', 'b'])
  })

  it('maxPublishesInFlight 2: a third batch waits until one of the two is answered, and flush() waits for all', async function () {
    const broker = new HeldBroker(2)
    const producer = new Producer(async () => broker, settings())
    const answered: string[] = []
    const a = sendTracked(producer, 'a', answered)
    const first = await broker.called(1)
    const b = sendTracked(producer, 'b', answered)
    const second = await broker.called(2)
    const c = sendTracked(producer, 'c', answered)
    let flushed = false
    const flushing = producer.flush().then(() => { flushed = true })
    first.answer([undefined])
    const third = await broker.called(3)
    expect(third.unansweredBefore).to.equal(1)
    expect(third.topics).to.deep.equal(['"c"'])
    third.answer([undefined])
    second.answer([undefined])
    await Promise.all([a, b, c])
    await flushing
    expect(flushed).to.equal(true)
    expect(answered).to.deep.equal(['a', 'b', 'c'])
  })

  it('default (no maxPublishesInFlight): the next batch is handed over only once the previous one is answered', async function () {
    const broker = new HeldBroker(undefined)
    const producer = new Producer(async () => broker, settings())
    const answered: string[] = []
    const a = sendTracked(producer, 'a', answered)
    const first = await broker.called(1)
    const b = sendTracked(producer, 'b', answered)
    const c = sendTracked(producer, 'c', answered)
    first.answer([undefined])
    const second = await broker.called(2)
    expect(second.unansweredBefore).to.equal(0)
    expect(second.topics).to.deep.equal(['"b"', '"c"'])
    second.answer([undefined, undefined])
    await Promise.all([a, b, c])
    expect(answered).to.deep.equal(['a', 'b', 'c'])
  })

  it('with an outbox, a retriable failure of the first batch diverts every unanswered send to it in order: that batch, the later one in flight, the queue', async function () {
    const broker = new HeldBroker(2)
    const spool = new ListSpool()
    const producer = new Producer(async () => broker, settings(), spool)
    const answered: string[] = []
    const a = sendTracked(producer, 'a', answered)
    const first = await broker.called(1)
    const b = sendTracked(producer, 'b', answered)
    const second = await broker.called(2)
    const c = sendTracked(producer, 'c', answered)
    first.answer([new BrokerError('connection lost', { retriable: true })])
    await Promise.all([a, b, c])
    expect(spool.appended).to.deep.equal(['"a"', '"b"', '"c"'])
    expect(answered).to.deep.equal(['a', 'b', 'c'])
    // The later batch's answer, when it comes, changes nothing: the outbox has its send.
    second.answer([undefined])
    await producer.flush()
    expect(spool.appended).to.deep.equal(['"a"', '"b"', '"c"'])
  })

  it('a send the broker acknowledged early is answered before the rest of its batch, in the order of sends', async function () {
    const broker = new HeldBroker(2)
    const producer = new Producer(async () => broker, settings())
    const answered: string[] = []
    const sends = ['a', 'b', 'c'].map(body => sendTracked(producer, body, answered))
    const batch = await broker.called(1)
    expect(batch.topics).to.deep.equal(['"a"', '"b"', '"c"'])
    // b before a: b waits for a.
    batch.acknowledge(1)
    await new Promise(resolve => setImmediate(resolve))
    expect(answered).to.deep.equal([])
    batch.acknowledge(0)
    await new Promise(resolve => setImmediate(resolve))
    expect(answered).to.deep.equal(['a', 'b'])
    batch.answer([undefined, undefined, undefined])
    await Promise.all(sends)
    expect(answered).to.deep.equal(['a', 'b', 'c'])
  })

  it('with an outbox, a send acknowledged early stays answered; a retriable failure behind it diverts only what follows', async function () {
    const broker = new HeldBroker(2)
    const spool = new ListSpool()
    const producer = new Producer(async () => broker, settings(), spool)
    const answered: string[] = []
    const sends = ['a', 'b', 'c'].map(body => sendTracked(producer, body, answered))
    const batch = await broker.called(1)
    batch.acknowledge(0)
    await new Promise(resolve => setImmediate(resolve))
    expect(answered).to.deep.equal(['a'])
    batch.answer([undefined, new BrokerError('connection lost', { retriable: true }), undefined])
    await Promise.all(sends)
    expect(spool.appended).to.deep.equal(['"b"'])
    expect(answered).to.have.members(['a', 'b', 'c'])
  })

  it('with an outbox, publishTimeout diverts every batch in flight, oldest first, then the queue', async function () {
    const broker = new HeldBroker(2)
    const spool = new ListSpool()
    const producer = new Producer(async () => broker, settings({ publishTimeout: 50 }), spool)
    const a = producer.send('events', 'a')
    await broker.called(1)
    const b = producer.send('events', 'b')
    await broker.called(2)
    const c = producer.send('events', 'c')
    await Promise.all([a, b, c])
    expect(spool.appended).to.deep.equal(['"a"', '"b"', '"c"'])
  })
})
