/**
 * The RabbitMQ adapter against a live broker (RABBITMQ_URL, default
 * amqp://guest:guest@127.0.0.1:5672). Tests go through the Broker interface; a plain
 * amqplib client checks what is on the wire. Every test uses its own exchange, topics and
 * groups, and deletes the queues and exchanges it made. A broker that cannot be reached
 * fails the tests: nothing is skipped.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { promisify } from 'node:util'
import amqplib, { type ChannelModel, type GetMessage } from 'amqplib'
import { expect } from 'chai'
import type { Broker, Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../../lib/brokers/broker.js'
import { createBroker } from '../../lib/brokers/rabbitmq/index.js'
import { resolveRabbitMqSettings, type RabbitMqOptions } from '../../lib/brokers/rabbitmq/rabbitmq-config.js'
import { BrokerError, ConfigError } from '../../lib/errors.js'
import { collector, message } from '../support/deliveries.js'
import { RecordingLogger } from '../support/recording-logger.js'
import { eventually } from '../helpers.js'

const URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const ADDRESS = URL.replace(/^(amqps?:\/\/[^:@/]*):[^@/]*@/, '$1:***@')

/** Closes one of this process's connections from the server side, found by its connection name. */
async function closeConnectionNamed (name: string): Promise<void> {
  const run = promisify(execFile)
  const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'])
  const line = stdout.split('\n').find(l => l.includes(`{"connection_name","${name}"}`))
  if (line === undefined) throw new Error(`no connection named "${name}" in:\n${stdout}`)
  await run('rabbitmqctl', ['close_connection', line.split('\t')[0]!, 'closed by the herald test suite'])
}

describe('RabbitMQ broker', function () {
  this.timeout(30_000)

  let logger: RecordingLogger
  let exchange: string
  let brokers: Broker[]
  let subscriptions: Subscription[]
  let queues: Set<string>
  let rawConnection: ChannelModel

  const name = (what: string): string => `herald-test-${what}-${randomUUID()}`

  const newBroker = (options: RabbitMqOptions = {}, url = URL, clientId = 'herald-test'): Broker => {
    const broker = createBroker(resolveRabbitMqSettings(url, {}, { exchange, ...options }), { logger, clientId })
    brokers.push(broker)
    return broker
  }

  const subscribe = async (broker: Broker, options: Partial<SubscribeOptions> & { topics: string[] }, handler: DeliveryHandler): Promise<Subscription> => {
    const full: SubscribeOptions = { group: name('group'), maxInFlight: 16, deadLetterTopics: [], ...options }
    for (const topic of full.topics) queues.add(`${topic}.${full.group}`)
    for (const topic of full.deadLetterTopics) queues.add(topic)
    const sub = await broker.subscribe(full, handler)
    subscriptions.push(sub)
    return sub
  }

  /** A queue of the test's own, bound to the exchange, read with plain amqplib. */
  const rawQueue = async (routingKey: string): Promise<string> => {
    const queue = name('raw')
    queues.add(queue)
    const ch = await rawConnection.createChannel()
    await ch.assertExchange(exchange, 'topic', { durable: true })
    await ch.assertQueue(queue, { durable: true })
    await ch.bindQueue(queue, exchange, routingKey)
    await ch.close()
    return queue
  }

  const messageCount = async (queue: string): Promise<number> => {
    const ch = await rawConnection.createChannel()
    try {
      return (await ch.checkQueue(queue)).messageCount
    } finally {
      await ch.close()
    }
  }

  beforeEach(async () => {
    logger = new RecordingLogger()
    exchange = name('exchange')
    brokers = []
    subscriptions = []
    queues = new Set()
    rawConnection = await amqplib.connect(URL)
  })

  afterEach(async () => {
    await Promise.all(brokers.map(async b => await b.close()))
    const ch = await rawConnection.createChannel()
    for (const queue of queues) await ch.deleteQueue(queue)
    await ch.deleteExchange(exchange)
    await rawConnection.close()
    expect(logger.lines().join('\n')).not.to.contain('guest:guest')
  })

  it('reports itself healthy with the password-masked address, and unhealthy once closed', async () => {
    const broker = newBroker()
    expect(await broker.health()).to.deep.equal({ ok: true, broker: 'rabbitmq', detail: ADDRESS })
    await broker.close()
    expect(await broker.health()).to.include({ ok: false, broker: 'rabbitmq' })
  })

  it('a wrong password fails connect() with a BrokerError that names the masked address and never the password', async () => {
    const secret = `not-the-password-${randomUUID()}`
    const broker = newBroker({}, URL.replace(/^(amqps?:\/\/[^:@/]*):[^@/]*@/, `$1:${secret}@`))
    let error: unknown
    try {
      await broker.connect()
    } catch (err) {
      error = err
    }
    expect(error).to.be.instanceOf(BrokerError)
    const err = error as BrokerError
    expect(err.message).to.contain(`RabbitMQ at ${ADDRESS} refused the login`)
    expect(err.code).to.equal('HERALD_BROKER_AUTH')
    expect(err.message).to.contain('ACCESS')
    expect(err.retriable).to.equal(false)
    expect(`${err.message} ${err.stack ?? ''} ${JSON.stringify(err)}`).not.to.contain(secret)
    expect(logger.lines().join('\n')).not.to.contain(secret)
    const health = await broker.health()
    expect(health.ok).to.equal(false)
    expect(health.detail).not.to.contain(secret)
  })

  it('a plain amqplib consumer reads the body, the headers, the herald-key header, and persistent delivery of what Herald publishes', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const queue = await rawQueue(topic)
    const body = JSON.stringify({ id: randomUUID(), name: 'user.created', data: { id: 7 } })
    const headers = { 'event-name': 'user.created', 'event-id': randomUUID(), 'event-source': 'users-service', 'content-type': 'application/json' }
    expect(await broker.publish([message(topic, body, 'user-7', headers)])).to.deep.equal([undefined])

    const ch = await rawConnection.createChannel()
    const got = await ch.get(queue, { noAck: true })
    await ch.close()
    expect(got).not.to.equal(false)
    const msg = got as GetMessage
    expect(msg.content.toString()).to.equal(body)
    expect(msg.fields.routingKey).to.equal(topic)
    expect(msg.fields.exchange).to.equal(exchange)
    expect(msg.properties.headers).to.deep.equal({ ...headers, 'herald-key': 'user-7' })
    expect(msg.properties.deliveryMode).to.equal(2)
    expect(msg.properties.contentType).to.equal('application/json')
    expect(msg.properties.messageId).to.be.a('string').and.not.equal('')
    expect(msg.properties.appId).to.equal('herald-test')
  })

  it('a message published with plain amqplib (JSON, no headers, no properties) reaches onDelivery', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const c = collector()
    await subscribe(broker, { topics: [topic] }, c.handler)
    const ch = await rawConnection.createChannel()
    ch.publish(exchange, topic, Buffer.from('{"plain":true}'))
    await ch.close()

    await eventually(() => c.deliveries.length === 1, 'the raw message')
    const d = c.deliveries[0]!
    expect(d.value.toString()).to.equal('{"plain":true}')
    expect(d.topic).to.equal(topic)
    expect(d.key).to.equal(undefined)
    expect(d.headers).to.deep.equal({})
    expect(d.redeliveries).to.equal(0)
  })

  it('a user header named key stays the user\'s header and never becomes or replaces the message key', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const c = collector()
    await subscribe(broker, { topics: [topic] }, c.handler)
    const headers = { 'event-id': randomUUID(), key: 'the user\'s own value' }
    expect(await broker.publish([message(topic, '{"n":1}', 'order-1', headers), message(topic, '{"n":2}', undefined, headers)])).to.deep.equal([undefined, undefined])
    const ch = await rawConnection.createChannel()
    ch.publish(exchange, topic, Buffer.from('{"n":3}'), { headers: { key: 'from another client' } })
    ch.publish(exchange, topic, Buffer.from('{"n":4}'), { headers: { 'event-id': 'x', key: 'legacy-key' } })
    await ch.close()

    await eventually(() => c.deliveries.length === 4, 'four deliveries')
    expect(c.deliveries.map(d => [d.key, d.headers.key])).to.deep.equal([
      ['order-1', 'the user\'s own value'],
      [undefined, 'the user\'s own value'],
      [undefined, 'from another client'],
      // Herald 0.1 put the key there; it is read as a header now (README: upgrading).
      [undefined, 'legacy-key']
    ])
  })

  it('header values of any AMQP type from other clients arrive as strings, and the herald-key header as the key', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const c = collector()
    await subscribe(broker, { topics: [topic] }, c.handler)
    const ch = await rawConnection.createChannel()
    ch.publish(exchange, topic, Buffer.from('{}'), {
      headers: { text: 'a', count: 42, ratio: 1.5, flag: true, bytes: Buffer.from('raw'), table: { a: 1 }, list: [1, 'two'], 'herald-key': 99 }
    })
    await ch.close()

    await eventually(() => c.deliveries.length === 1, 'the raw message')
    expect(c.deliveries[0]!.key).to.equal('99')
    expect(c.deliveries[0]!.headers).to.deep.equal({ text: 'a', count: '42', ratio: '1.5', flag: 'true', bytes: 'raw', table: '{"a":1}', list: '[1,"two"]' })
  })

  it('publishing to a topic that no queue is bound to resolves with an unroutable error, not undefined', async () => {
    const broker = newBroker()
    const bound = name('topic')
    const unbound = name('topic')
    await subscribe(broker, { topics: [bound] }, async d => await d.ack())

    const results = await broker.publish([message(bound, '1'), message(unbound, '2'), message(bound, '3')])
    expect(results[0]).to.equal(undefined)
    expect(results[2]).to.equal(undefined)
    expect(results[1]).to.be.instanceOf(BrokerError)
    const err = results[1] as BrokerError
    expect(err.code).to.equal('HERALD_UNROUTABLE')
    expect(err.retriable).to.equal(false)
    expect(err.message).to.contain(`no queue is bound to topic "${unbound}" on exchange "${exchange}"`)
    expect(err.message).to.contain('start a consumer for it first')
  })

  it('onAcknowledged reports each message RabbitMQ confirmed, never an unroutable one', async () => {
    const broker = newBroker()
    const bound = name('topic')
    const unbound = name('topic')
    await subscribe(broker, { topics: [bound] }, async d => await d.ack())

    const acknowledged: number[] = []
    const results = await broker.publish([message(bound, '1'), message(unbound, '2'), message(bound, '3')], i => acknowledged.push(i))
    expect(acknowledged.sort()).to.deep.equal([0, 2])
    expect(results[0]).to.equal(undefined)
    expect((results[1] as BrokerError).code).to.equal('HERALD_UNROUTABLE')
    expect(results[2]).to.equal(undefined)
  })

  it('the dead-letter queues exist once subscribe resolves and keep what is published to them before anyone consumes', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const group = name('group')
    const dlq = `${topic}.${group}.dlq`
    await subscribe(broker, { topics: [topic], group, deadLetterTopics: [dlq] }, async d => await d.ack())

    const headers = { 'herald-dlq-reason': 'Error: boom', 'herald-dlq-topic': topic }
    expect(await broker.publish([message(dlq, '{"dead":true}', 'k', headers)])).to.deep.equal([undefined])
    await eventually(async () => await messageCount(dlq) === 1, 'the dead letter in its queue')

    const ch = await rawConnection.createChannel()
    const got = await ch.get(dlq, { noAck: true }) as GetMessage
    await ch.close()
    expect(got.content.toString()).to.equal('{"dead":true}')
    expect(got.properties.headers).to.deep.equal({ ...headers, 'herald-key': 'k' })
  })

  it('a dead-letter topic can be subscribed to like any other topic', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const group = name('group')
    const dlq = `${topic}.${group}.dlq`
    await subscribe(broker, { topics: [topic], group, deadLetterTopics: [dlq] }, async d => await d.ack())
    const reader = collector()
    await subscribe(broker, { topics: [dlq] }, reader.handler)
    await broker.publish([message(dlq, 'dead')])
    await eventually(() => reader.deliveries.length === 1, 'the dead letter at its reader')
    expect(reader.deliveries[0]!.topic).to.equal(dlq)
  })

  it('refuses topics and groups RabbitMQ would misroute, naming the fix', async () => {
    const broker = newBroker()
    const attempts: Array<Partial<SubscribeOptions> & { topics: string[] }> = [
      { topics: ['orders.*'] },
      { topics: ['orders.#'] },
      { topics: [name('topic')], group: 'billing.*' },
      { topics: [name('topic')], group: 'dlq' },
      { topics: [name('topic')], deadLetterTopics: ['orders.#.dlq'] }
    ]
    for (const options of attempts) {
      let error: unknown
      try {
        await broker.subscribe({ group: name('group'), maxInFlight: 1, deadLetterTopics: [], ...options }, async d => await d.ack())
      } catch (err) {
        error = err
      }
      expect(error, JSON.stringify(options)).to.be.instanceOf(ConfigError)
    }
    let wildcard: unknown
    await broker.subscribe({ group: name('group'), maxInFlight: 1, deadLetterTopics: [], topics: ['orders.*'] }, async () => {}).catch((err: unknown) => { wildcard = err })
    expect((wildcard as Error).message).to.contain('"*" and "#" are wildcards').and.contain('rename the topic')
  })

  it('a queue that exists with another type fails subscribe with an error naming the fix', async () => {
    const topic = name('topic')
    const group = name('group')
    queues.add(`${topic}.${group}`)
    const ch = await rawConnection.createChannel()
    await ch.assertQueue(`${topic}.${group}`, { durable: true, arguments: { 'x-queue-type': 'classic' } })
    await ch.close()
    let error: unknown
    await newBroker({ queueType: 'quorum' }).subscribe({ group, topics: [topic], maxInFlight: 1, deadLetterTopics: [] }, async () => {}).catch((err: unknown) => { error = err })
    expect(error).to.be.instanceOf(BrokerError)
    expect((error as Error).message).to.contain(`could not declare the queue "${topic}.${group}"`).and.contain('PRECONDITION_FAILED').and.contain('rabbitmq.queueType')
  })

  it('an exchange that exists with another type fails connect() with an error naming the fix', async () => {
    const ch = await rawConnection.createChannel()
    await ch.assertExchange(exchange, 'direct', { durable: true })
    await ch.close()
    let error: unknown
    await newBroker().connect().catch((err: unknown) => { error = err })
    expect(error).to.be.instanceOf(BrokerError)
    expect((error as Error).message).to.contain(`could not declare the topic exchange "${exchange}"`).and.contain('rabbitmq.exchange')
  })

  for (const queueType of ['classic', 'quorum'] as const) {
    it(`${queueType} queues: a message held by a consumer that went away unsettled is counted once per loss; a release counts nothing`, async () => {
      const topic = name('topic')
      const group = name('group')
      let held: Delivery | undefined
      const first = newBroker({ queueType })
      await subscribe(first, { topics: [topic], group }, async (d) => { held = d })
      await first.publish([message(topic, 'crash-me')])
      await eventually(() => held !== undefined, 'the first member to hold the message')
      expect(held!.redeliveries).to.equal(0)
      // Closing the broker closes the channel at once: the message goes back unsettled, as when a worker dies.
      await first.close()

      const c = collector(async (d) => {
        if (c.deliveries.length === 1) await d.release()
        else await d.ack()
      })
      await subscribe(newBroker({ queueType }), { topics: [topic], group }, c.handler)
      await eventually(() => c.deliveries.length === 2, 'the message delivered again, released, and delivered again')
      expect(c.values()).to.deep.equal(['crash-me', 'crash-me'])
      expect(c.deliveries.map(d => [d.redeliveries, d.redeliveriesCounted])).to.deep.equal([[1, true], [1, true]])
      expect(c.deliveries[1]!.headers, 'Herald\'s count is not a header of the message').not.to.have.property('herald-redeliveries')
    })
  }

  it('a publish whose channel dies before the confirm resolves with an error, and the next publish opens a new channel', async () => {
    const broker = newBroker()
    const topic = name('topic')
    await broker.connect()
    // Publishing to an exchange that no longer exists makes RabbitMQ close the channel (404).
    const ch = await rawConnection.createChannel()
    await ch.deleteExchange(exchange)
    await ch.close()
    const [lost] = await broker.publish([message(topic, 'x')])
    expect(lost).to.be.instanceOf(BrokerError)
    expect(lost!.message).to.contain('publishing channel closed').and.contain('NOT_FOUND')

    // A new channel declares the exchange again; the topic has no queue, so it is unroutable.
    const [next] = await broker.publish([message(topic, 'y')])
    expect((next as BrokerError).code).to.equal('HERALD_UNROUTABLE')
  })

  it('a large batch goes through flow control (publish returning false) and every message is confirmed', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const queue = await rawQueue(topic)
    const body = 'x'.repeat(1024)
    const batch = Array.from({ length: 3000 }, () => message(topic, body))
    const results = await broker.publish(batch)
    expect(results.filter(r => r !== undefined)).to.deep.equal([])
    expect(await messageCount(queue)).to.equal(3000)
  })

  it('after the server closes its connections, a subscription consumes again and publishing reconnects, each logged', async function () {
    this.timeout(60_000)
    const clientId = name('client')
    const broker = newBroker({}, URL, clientId)
    const topic = name('topic')
    const c = collector()
    await subscribe(broker, { topics: [topic] }, c.handler)
    await broker.publish([message(topic, 'before')])
    await eventually(() => c.deliveries.length === 1, 'the first message')

    await closeConnectionNamed(`${clientId} (consume)`)
    await closeConnectionNamed(`${clientId} (publish)`)
    await eventually(() => logger.records.some(r => r.msg === 'consuming again'), 'the subscription to consume again', 20_000)
    await eventually(() => logger.records.filter(r => r.msg.startsWith('lost the connection to RabbitMQ')).length === 2, 'each lost connection logged')

    expect(await broker.publish([message(topic, 'after')])).to.deep.equal([undefined])
    await eventually(() => c.deliveries.length === 2, 'the message published after the outage')
    expect(c.values()).to.deep.equal(['before', 'after'])
    expect(logger.records.some(r => r.msg === 'reconnected to RabbitMQ')).to.equal(true)
  })

  it('a consumer cancelled by the server (its queue deleted) is logged, and the queue is declared and consumed again', async () => {
    const broker = newBroker()
    const topic = name('topic')
    const group = name('group')
    const c = collector()
    await subscribe(broker, { topics: [topic], group }, c.handler)
    const ch = await rawConnection.createChannel()
    await ch.deleteQueue(`${topic}.${group}`)
    await ch.close()

    await eventually(() => logger.records.some(r => r.msg.includes('RabbitMQ cancelled the consumer')), 'the cancellation to be logged')
    await eventually(() => logger.records.some(r => r.msg === 'consuming again'), 'the subscription to consume again')
    expect(await broker.publish([message(topic, 'after')])).to.deep.equal([undefined])
    await eventually(() => c.deliveries.length === 1, 'the message published after')
  })

})
