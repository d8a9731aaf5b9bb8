import { randomUUID } from 'node:crypto'
import { inspect } from 'node:util'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import type { Broker, Delivery, OutgoingMessage, SubscribeOptions, Subscription } from '../../lib/brokers/broker.js'
import { createBroker } from '../../lib/brokers/redis/index.js'
import { resolveRedisSettings, type RedisOptions } from '../../lib/brokers/redis/redis-config.js'
import { BrokerError, ConfigError } from '../../lib/errors.js'
import { eventually, sleep } from '../helpers.js'
import { RecordingLogger } from '../support/recording-logger.js'

/**
 * The Redis Streams adapter, through the Broker contract, against a live Redis
 * (`REDIS_URL`, default redis://127.0.0.1:6379). No Redis means failures, not skips.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const PREFIX = 'herald-test:'

describe('redis broker', function () {
  this.timeout(30_000)
  let raw: Redis
  let keys: string[] = []
  let brokers: Broker[] = []
  let logger = new RecordingLogger()

  /** A fresh topic; its stream is deleted after the test. */
  function topic (): string {
    const t = `herald-test-${randomUUID()}`
    keys.push(PREFIX + t)
    return t
  }

  function group (): string {
    return `herald-test-${randomUUID()}`
  }

  async function broker (options: RedisOptions = {}, url = REDIS_URL): Promise<Broker> {
    const b = createBroker({ url, prefix: PREFIX, options: { prefix: PREFIX, ...options } }, { logger, clientId: 'herald-test' })
    brokers.push(b)
    await b.connect()
    return b
  }

  function message (t: string, body: unknown, extra: Partial<OutgoingMessage> = {}): OutgoingMessage {
    return { topic: t, value: Buffer.from(JSON.stringify(body)), headers: {}, ...extra }
  }

  async function publish (b: Broker, messages: OutgoingMessage[]): Promise<void> {
    const results = await b.publish(messages)
    expect(results).to.deep.equal(messages.map(() => undefined))
  }

  /** Subscribes and collects deliveries; `settle` decides what happens to each (default: ack at once). */
  async function collect (b: Broker, options: Partial<SubscribeOptions> & { topics: string[], group: string },
    settle: ((d: Delivery) => Promise<void>) | 'hold' = async d => await d.ack()): Promise<{ got: Delivery[], sub: Subscription }> {
    const got: Delivery[] = []
    const sub = await b.subscribe({ maxInFlight: 16, deadLetterTopics: [], ...options }, async (d) => {
      got.push(d)
      if (settle !== 'hold') await settle(d)
    })
    return { got, sub }
  }

  const body = (d: Delivery): unknown => JSON.parse(d.value.toString('utf8'))

  before(async function () {
    raw = new Redis(REDIS_URL, { lazyConnect: true, protocol: 2, maxRetriesPerRequest: 1, retryStrategy: () => null })
    raw.on('error', () => {})
    await raw.connect()
  })

  after(async function () {
    await raw?.quit()
  })

  afterEach(async function () {
    // Closing a broker stops its subscriptions without waiting for what tests left unsettled.
    for (const b of brokers.splice(0)) await b.close()
    if (keys.length > 0) await raw.del(...keys.splice(0))
    logger = new RecordingLogger()
  })

  it('a published entry has the fields data, key and a JSON headers object, as other Redis clients read it', async function () {
    const b = await broker()
    const t = topic()
    await publish(b, [message(t, { n: 1 }, { key: 'k1', headers: { a: 'b' } }), message(t, { n: 2 })])
    const entries = await raw.xrange(PREFIX + t, '-', '+')
    expect(entries).to.have.length(2)
    expect(entries[0]![1]).to.deep.equal(['data', '{"n":1}', 'key', 'k1', 'headers', '{"a":"b"}'])
    expect(entries[1]![1]).to.deep.equal(['data', '{"n":2}', 'headers', '{}'])
  })

  it('streams are not trimmed unless maxLen is set, and then only approximately to it', async function () {
    const untrimmed = topic()
    const trimmed = topic()
    const b = await broker()
    const capped = await broker({ maxLen: 10 })
    const batch = (t: string): OutgoingMessage[] => [...Array(500).keys()].map(n => message(t, { n }))
    await publish(b, batch(untrimmed))
    await publish(capped, batch(trimmed))
    expect(await raw.xlen(PREFIX + untrimmed)).to.equal(500)
    expect(await raw.xlen(PREFIX + trimmed)).to.be.below(500)
  })

  it('an entry left pending by a consumer that died is reclaimed and delivered with its redeliveries', async function () {
    const b = await broker()
    const t = topic()
    const g = group()
    await raw.xgroup('CREATE', PREFIX + t, g, '0', 'MKSTREAM')
    await publish(b, [message(t, { n: 1 }, { key: 'k' })])
    const read = await raw.xreadgroup('GROUP', g, 'dead', 'COUNT', 10, 'STREAMS', PREFIX + t, '>') as unknown[]
    expect(read).to.have.length(1)
    const { got } = await collect(await broker({ claimIdleMs: 200 }), { topics: [t], group: g })
    await eventually(() => got.length === 1, 'the reclaimed entry', 10_000)
    expect(body(got[0]!)).to.deep.equal({ n: 1 })
    expect(got[0]!.key).to.equal('k')
    expect(got[0]!.redeliveries).to.be.at.least(1)
    await eventually(async () => ((await raw.xpending(PREFIX + t, g)) as [number])[0] === 0, 'the reclaimed entry to be acknowledged')
  })

  it('an entry with only a data field, from another producer, is an ordinary message', async function () {
    const b = await broker()
    const t = topic()
    const { got } = await collect(b, { topics: [t], group: group() })
    await raw.xadd(PREFIX + t, '*', 'data', '{"plain":true}')
    await eventually(() => got.length === 1, 'the delivery')
    expect(body(got[0]!)).to.deep.equal({ plain: true })
    expect(got[0]!.key).to.equal(undefined)
    expect(got[0]!.headers).to.deep.equal({})
  })

  it('an entry with no data field is delivered with an empty value, and the next entries still flow', async function () {
    const b = await broker()
    const t = topic()
    const { got } = await collect(b, { topics: [t], group: group() })
    await raw.xadd(PREFIX + t, '*', 'payload', 'not ours', 'headers', 'not json')
    await raw.xadd(PREFIX + t, '*', 'data', '{"n":2}')
    await eventually(() => got.length === 2, 'both entries')
    expect(got[0]!.value).to.have.length(0)
    expect(got[0]!.headers).to.deep.equal({})
    expect(body(got[1]!)).to.deep.equal({ n: 2 })
    expect(logger.lines().some(l => l.includes('no "data" field'))).to.equal(true)
  })

  /** Records the commands Redis runs (MONITOR) until stopped; Lua's own calls are left out. */
  async function monitor (): Promise<{ commands: Array<{ args: string[], source: string }>, stop: () => void }> {
    const commands: Array<{ args: string[], source: string }> = []
    const m = await raw.monitor()
    m.on('monitor', (_time: string, args: string[], source: string) => {
      if (source !== 'lua') commands.push({ args, source })
    })
    return { commands, stop: () => m.disconnect() }
  }

  const named = (name: string) => (c: { args: string[] }): boolean => c.args[0]?.toUpperCase() === name

  it('entries settled in the same tick are acknowledged with one XACK per stream, and ack() resolves once Redis took it', async function () {
    const b = await broker()
    const t1 = topic()
    const t2 = topic()
    const g = group()
    const { got } = await collect(b, { topics: [t1, t2], group: g, maxInFlight: 50 }, 'hold')
    await publish(b, [...Array(25).keys()].flatMap(n => [message(t1, { n }), message(t2, { n })]))
    await eventually(() => got.length === 50, 'all 50 handed over')
    const m = await monitor()
    try {
      await Promise.all(got.map(async d => await d.ack()))
      // Resolved acks mean Redis took them: nothing of either stream is pending any more.
      for (const t of [t1, t2]) expect(((await raw.xpending(PREFIX + t, g)) as [number])[0], t).to.equal(0)
      const xacks = (t: string): Array<{ args: string[] }> => m.commands.filter(named('XACK')).filter(c => c.args[1] === PREFIX + t)
      await eventually(() => xacks(t1).length + xacks(t2).length >= 2, 'the XACKs in the MONITOR feed')
      expect(xacks(t1).map(c => c.args.length - 3), 'one XACK for t1, with its 25 ids').to.deep.equal([25])
      expect(xacks(t2).map(c => c.args.length - 3), 'one XACK for t2, with its 25 ids').to.deep.equal([25])
    } finally {
      m.stop()
    }
  })

  // The read-ahead: maxWaiting (what the runner takes unsettled beyond maxInFlight), at most 100, at least maxInFlight.
  for (const { maxWaiting, readAhead } of [{ maxWaiting: undefined, readAhead: 20 }, { maxWaiting: 50, readAhead: 50 }, { maxWaiting: 200, readAhead: 100 }]) {
    it(`reads ask for the read-ahead at a time (${readAhead} with maxInFlight 20, maxWaiting ${maxWaiting}), and the blocking connection asks CLIENT ID once, not before every read`, async function () {
      const b = await broker()
      const t = topic()
      await publish(b, [...Array(200).keys()].map(n => message(t, { n })))
      const m = await monitor()
      try {
        // Handlers that finish a few at a time, as real ones do.
        const { got } = await collect(b, { topics: [t], group: group(), maxInFlight: 20, maxWaiting }, async d => {
          for (let i = 0; i < (body(d) as { n: number }).n % 7; i++) await new Promise(resolve => setImmediate(resolve))
          await d.ack()
        })
        await eventually(() => got.length === 200, 'all 200 delivered')
        const acked = (): number => m.commands.filter(named('XACK')).filter(c => c.args[1] === PREFIX + t).reduce((n, c) => n + c.args.length - 3, 0)
        await eventually(() => acked() === 200, 'every XACK in the MONITOR feed')
        const reads = m.commands.filter(named('XREADGROUP')).filter(c => c.args.includes(PREFIX + t))
        const counts = reads.map(c => Number(c.args[c.args.findIndex(a => a.toUpperCase() === 'COUNT') + 1]))
        expect(counts.filter(n => n !== readAhead), `reads of other than ${readAhead} among ${counts.join(',')}`).to.deep.equal([])
        const readers = new Set(reads.map(c => c.source))
        expect(readers.size, 'one blocking connection').to.equal(1)
        const clientIds = m.commands.filter(named('CLIENT')).filter(c => c.args[1]?.toUpperCase() === 'ID' && readers.has(c.source))
        expect(clientIds.length, `CLIENT ID asked ${clientIds.length} times for ${reads.length} reads`).to.be.at.most(1)
      } finally {
        m.stop()
      }
    })
  }

  it('close() waits for handed-over deliveries and leaves the group: no consumer name is left behind', async function () {
    const b = await broker()
    const t = topic()
    const g = group()
    const { got, sub } = await collect(b, { topics: [t], group: g }, 'hold')
    await publish(b, [message(t, { n: 1 })])
    await eventually(() => got.length === 1, 'the first delivery')
    let closed = false
    const closing = sub.close().then(() => { closed = true })
    // A round trip to Redis: close() still waits for the held delivery.
    await publish(b, [message(topic(), { n: 2 })])
    expect(closed, 'close() waits for the unsettled delivery').to.equal(false)
    await got[0]!.ack()
    await closing
    const consumers = await raw.xinfo('CONSUMERS', PREFIX + t, g) as unknown[]
    expect(consumers, 'no consumer name left in the group').to.have.length(0)
  })

  it('a stream deleted under a subscription is created again with its group, and later messages arrive', async function () {
    const b = await broker()
    const t = topic()
    const { got } = await collect(b, { topics: [t], group: group() })
    await publish(b, [message(t, { n: 1 })])
    await eventually(() => got.length === 1, 'the first message')
    await raw.del(PREFIX + t)
    await sleep(100)
    await publish(b, [message(t, { n: 2 })])
    await eventually(() => got.length === 2, 'the message after the deletion', 10_000)
    expect(body(got[1]!)).to.deep.equal({ n: 2 })
    expect(logger.lines().some(l => l.includes('disappeared'))).to.equal(true)
  })

  it('a client that asks for RESP3 (protocol: 3) delivers, releases and reclaims the same way', async function () {
    const b = await broker({ client: { protocol: 3 } })
    const t = topic()
    let released = false
    const { got } = await collect(b, { topics: [t], group: group() }, async d => {
      if (released) return await d.ack()
      released = true
      await d.release()
    })
    await publish(b, [message(t, { n: 1 }, { key: 'k', headers: { h: 'v' } })])
    await eventually(() => got.length === 2, 'the delivery and its redelivery', 10_000)
    expect(got.map(d => [body(d), d.key, d.headers, d.redeliveries])).to.deep.equal([
      [{ n: 1 }, 'k', { h: 'v' }, 0],
      [{ n: 1 }, 'k', { h: 'v' }, 0]
    ])
  })

  it('options are checked: claimIdleMs is at least 100 ms, and client.keyPrefix is refused in favour of prefix', function () {
    expect(() => resolveRedisSettings(undefined, {}, { claimIdleMs: 10 })).to.throw(ConfigError, 'redis.claimIdleMs')
    expect(() => resolveRedisSettings(undefined, {}, { client: { keyPrefix: 'app:' } })).to.throw(ConfigError, 'redis.prefix')
    expect(resolveRedisSettings(undefined, {}, { claimIdleMs: 100, prefix: 'app:' }).prefix).to.equal('app:')
  })

  it('a subscribe racing close() rejects with the "broker is closed" error, like the other adapters', async function () {
    for (const delay of [0, 1, 5, 20]) {
      const b = await broker()
      const t = topic()
      const subscribing = b.subscribe({ group: group(), topics: [t], maxInFlight: 4, deadLetterTopics: [] }, async d => await d.ack())
      let settledEarly = false
      subscribing.then(() => { settledEarly = !closing }, () => {})
      let closing = false
      await sleep(delay)
      closing = true
      await b.close()
      const outcome = await subscribing.then(() => 'resolved', (err: unknown) => err)
      // A subscribe that finished before close() began is a normal subscription, closed with the broker.
      if (settledEarly) continue
      expect(outcome, `subscribe racing close() after ${delay} ms`).to.be.instanceOf(BrokerError)
      expect((outcome as Error).message).to.match(/the Redis broker is closed/)
    }
  })

  it('health() answers ok with the address, its password masked', async function () {
    const b = await broker()
    const health = await b.health()
    expect(health).to.deep.include({ ok: true, broker: 'redis' })
    expect(health.detail).to.include('127.0.0.1')
  })

  describe('a secret in the URL never shows', function () {
    const secret = `s3cret-${randomUUID()}`

    function expectNoSecret (err: unknown): void {
      expect(err).to.be.instanceOf(BrokerError)
      expect((err as Error).message).to.match(/(could not reach Redis at|Redis at) redis:\/\/.*:\*\*\*@127\.0\.0\.1/)
      expect(inspect(err, { depth: 10 })).to.not.include(secret)
      expect(logger.lines().join('\n')).to.not.include(secret)
    }

    it('a wrong password gives an error that names the masked address and not the password', async function () {
      // A user that does not exist: Redis answers WRONGPASS whether or not it requires a password.
      const b = createBroker({ url: `redis://herald-nobody:${secret}@127.0.0.1:6379`, prefix: PREFIX, options: {} }, { logger, clientId: 'herald-test' })
      brokers.push(b)
      const err = await b.connect().then(() => undefined, (e: unknown) => e)
      expectNoSecret(err)
      expect((err as Error).message).to.include('WRONGPASS')
      const health = await b.health()
      expect(health.ok).to.equal(false)
      expect(health.detail).to.not.include(secret)
      expect(await b.publish([message('t', {})])).to.satisfy((r: unknown[]) => r[0] instanceof BrokerError && !(r[0] as Error).message.includes(secret))
    })

    it('an unreachable Redis gives an error with the reason, and the password masked', async function () {
      const b = createBroker({ url: `redis://:${secret}@127.0.0.1:1`, prefix: PREFIX, options: {} }, { logger, clientId: 'herald-test' })
      brokers.push(b)
      const err = await b.connect().then(() => undefined, (e: unknown) => e)
      expectNoSecret(err)
      expect((err as Error).message).to.include('ECONNREFUSED')
    })
  })
})
