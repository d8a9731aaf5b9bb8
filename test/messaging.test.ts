import { expect } from 'chai'
import {
  ConfigError, configureMessaging, createMessaging, getMessaging, getProducer, publishEvent, event, Messaging
} from '../lib/index.js'
import { resetDefaultMessaging, resetMemoryWarning } from '../lib/messaging.js'
import { MemoryBroker, MemoryStore, sharedMemoryStore } from '../lib/brokers/memory/index.js'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Broker } from '../lib/index.js'
import { startConsumers, messageHandler } from '../lib/index.js'
import { randomName } from './helpers.js'
import { RecordingLogger } from './support/recording-logger.js'

function configError (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('configuration', function () {
  const env = { ...process.env }
  afterEach(function () {
    process.env = { ...env }
    resetDefaultMessaging()
  })
  for (const name of ['MESSAGING_BROKER', 'KAFKA_BOOTSTRAP_SERVERS', 'RABBITMQ_URL', 'REDIS_URL', 'SERVICE_NAME', 'HERALD_LOG_LEVEL', 'ORDERS_BUS_URL']) {
    beforeEach(function () { delete process.env[name] })
  }

  it('uses the embedded memory broker when nothing is configured', function () {
    const m = createMessaging({ logger: false })
    expect(m.options.broker).to.equal('memory')
    expect(m.options.source).to.equal('herald')
    expect(m.options.defaultTopic).to.equal('events')
  })

  it('takes the broker from MESSAGING_BROKER, else from whichever broker variable is set', function () {
    process.env.REDIS_URL = 'redis://127.0.0.1:6379'
    expect(createMessaging({ logger: false }).options.broker).to.equal('redis')
    process.env.KAFKA_BOOTSTRAP_SERVERS = '127.0.0.1:9092'
    expect(createMessaging({ logger: false }).options.broker).to.equal('kafka')
    process.env.MESSAGING_BROKER = 'memory'
    expect(createMessaging({ logger: false }).options.broker).to.equal('memory')
    process.env.SERVICE_NAME = 'billing'
    expect(createMessaging({ logger: false }).options.source).to.equal('billing')
  })

  it('splits KAFKA_BOOTSTRAP_SERVERS on commas', function () {
    process.env.KAFKA_BOOTSTRAP_SERVERS = '127.0.0.1:9092, 127.0.0.2:9093'
    expect(createMessaging({ logger: false }).options.address).to.equal('127.0.0.1:9092,127.0.0.2:9093')
  })

  it('rejects an unknown broker, naming the option and the allowed values', function () {
    const err = configError(() => createMessaging({ broker: 'kafak' as never }))
    expect(err.option).to.equal('broker')
    expect(err.message).to.contain('"kafak"').and.to.contain('"kafka", "rabbitmq", "redis", "memory"')
    process.env.MESSAGING_BROKER = 'nats'
    expect(configError(() => createMessaging()).option).to.equal('MESSAGING_BROKER')
  })

  it('rejects empty or malformed bootstrap servers with the expected form', function () {
    expect(configError(() => createMessaging({ broker: 'kafka', bootstrapServers: '' })).message).to.contain('at least one Kafka broker')
    expect(configError(() => createMessaging({ broker: 'kafka', bootstrapServers: [] })).option).to.equal('bootstrapServers')
    const err = configError(() => createMessaging({ broker: 'kafka', bootstrapServers: 'kafka://localhost:9092' }))
    expect(err.message).to.contain('"kafka://localhost:9092" is not "host:port"')
    expect(configError(() => createMessaging({ broker: 'kafka', bootstrapServers: 'localhost:99999' })).message).to.contain('host:port')
  })

  it('rejects a malformed URL or a wrong scheme, without showing its password', function () {
    const bad = configError(() => createMessaging({ broker: 'rabbitmq', url: 'amqp://guest:s3cret@' }))
    expect(bad.option).to.equal('url')
    expect(bad.message).not.to.contain('s3cret')
    const scheme = configError(() => createMessaging({ broker: 'redis', url: 'http://user:hunter2@localhost:6379' }))
    expect(scheme.message).to.contain('expected "redis:" or "rediss:"').and.not.to.contain('hunter2')
    process.env.RABBITMQ_URL = 'nope'
    expect(configError(() => createMessaging({ broker: 'rabbitmq' })).option).to.equal('RABBITMQ_URL')
  })

  it('rejects an unknown HERALD_LOG_LEVEL when the default logger is used', function () {
    process.env.HERALD_LOG_LEVEL = 'loud'
    const err = configError(() => createMessaging({ broker: 'memory' }))
    expect(err.option).to.equal('HERALD_LOG_LEVEL')
    expect(err.message).to.contain('"loud"').and.to.contain('debug, info, warn, error, silent')
    expect(() => createMessaging({ broker: 'memory', logger: false })).not.to.throw()
  })

  it('rejects bad numeric options with the range', function () {
    expect(configError(() => createMessaging({ publishTimeout: 0 })).message).to.contain('publishTimeout: must be a whole number from 1')
    expect(configError(() => createMessaging({ maxBatchSize: 1.5 })).option).to.equal('maxBatchSize')
    expect(configError(() => createMessaging({ broker: 'memory', source: '' })).option).to.equal('source')
  })

  it('a Redis URL whose path is not a database number is a ConfigError at creation, password masked', function () {
    const err = configError(() => createMessaging({ broker: 'redis', url: 'redis://:hunter2@127.0.0.1:6379/abc' }))
    expect(err.option).to.equal('url')
    expect(err.message).to.contain('database "abc"').and.to.contain('is a number').and.not.to.contain('hunter2')
    expect(() => createMessaging({ broker: 'redis', logger: false, url: 'redis://127.0.0.1:6379/3' })).not.to.throw()
    expect(() => createMessaging({ broker: 'redis', logger: false, url: 'redis://127.0.0.1:6379/' })).not.to.throw()
  })

  it('connectTimeout is checked like the other numeric options', function () {
    expect(configError(() => createMessaging({ broker: 'memory', connectTimeout: 0 })).message).to.contain('connectTimeout: must be a whole number from 1')
    expect(configError(() => createMessaging({ broker: 'memory', connectTimeout: '5s' as never })).option).to.equal('connectTimeout')
    expect(createMessaging({ broker: 'memory', logger: false }).options.connectTimeout).to.equal(5000)
  })

  describe('a misspelt option never runs silently on the embedded broker', function () {
    const cases: Array<[string, () => unknown, string, string]> = [
      ['a top-level key', () => createMessaging({ brokr: 'redis', url: 'redis://127.0.0.1:6379' } as never), 'brokr', 'unknown option "brokr"; did you mean "broker"?'],
      ['a swapped-letters key', () => createMessaging({ broker: 'memory', defualtTopic: 'x' } as never), 'defualtTopic', 'did you mean "defaultTopic"?'],
      ['a redis key', () => createMessaging({ broker: 'redis', redis: { prefx: 'app:' } } as never), 'redis.prefx', 'unknown option "redis.prefx"; did you mean "redis.prefix"?'],
      ['a kafka key', () => createMessaging({ broker: 'kafka', kafka: { numPartition: 6 } } as never), 'kafka.numPartition', 'did you mean "kafka.numPartitions"?'],
      ['a rabbitmq key', () => createMessaging({ broker: 'rabbitmq', rabbitmq: { exchnage: 'x' } } as never), 'rabbitmq.exchnage', 'did you mean "rabbitmq.exchange"?'],
      ['a memory key', () => createMessaging({ broker: 'memory', memory: { retian: 5 } } as never), 'memory.retian', 'did you mean "memory.retain"?'],
      ['a key far from any option', () => createMessaging({ broker: 'memory', zzzzzzzz: 1 } as never), 'zzzzzzzz', '"broker", "bootstrapServers", "url"']
    ]
    for (const [what, create, option, text] of cases) {
      it(`${what}: a ConfigError naming "${option}" and the nearest valid option`, function () {
        const err = configError(create)
        expect(err.option).to.equal(option)
        expect(err.message).to.contain(text)
      })
    }

    it('the options passed through to a client (kafka.client, redis.client, rabbitmq.socketOptions) are the client\'s: their keys are not checked', function () {
      expect(() => createMessaging({ broker: 'kafka', logger: false, kafka: { client: { someFutureOption: 1 } as never, producer: { transactionTimeout: 1000 } } })).not.to.throw()
      expect(() => createMessaging({ broker: 'redis', logger: false, redis: { client: { anything: true } as never } })).not.to.throw()
      expect(() => createMessaging({ broker: 'rabbitmq', logger: false, rabbitmq: { socketOptions: { noDelay: true } as never } })).not.to.throw()
    })

    it('url without broker picks the broker from its scheme; an unknown scheme is a ConfigError', function () {
      process.env.KAFKA_BOOTSTRAP_SERVERS = '127.0.0.1:9092'
      expect(createMessaging({ logger: false, url: 'redis://127.0.0.1:6379' }).options.broker).to.equal('redis')
      expect(createMessaging({ logger: false, url: 'rediss://127.0.0.1:6380' }).options.broker).to.equal('redis')
      expect(createMessaging({ logger: false, url: 'amqp://guest:guest@127.0.0.1:5672' }).options.broker).to.equal('rabbitmq')
      expect(createMessaging({ logger: false, url: 'amqps://127.0.0.1:5671' }).options.broker).to.equal('rabbitmq')
      const err = configError(() => createMessaging({ logger: false, url: 'nats://app:hunter2@127.0.0.1:4222' }))
      expect(err.option).to.equal('url')
      expect(err.message).to.contain('amqp://').and.to.contain('redis://').and.not.to.contain('hunter2')
    })

    it('the Express middleware and the Fastify plugin name a misspelt option of their own too', async function () {
      const { herald: heraldExpress } = await import('../plugins/express.js')
      const { messagingFrom } = await import('../plugins/shared.js')
      const m = createMessaging({ broker: 'memory', logger: false })
      const err = configError(() => heraldExpress({ messaging: m, closeMesaging: true } as never))
      expect(err.message).to.contain('unknown option "closeMesaging"; did you mean "closeMessaging"?')
      expect(configError(() => heraldExpress({ brokr: 'redis' } as never)).message).to.contain('did you mean "broker"?')
      expect(configError(() => messagingFrom({ broker: 'memory', publishTimout: 5 } as never)).message).to.contain('did you mean "publishTimeout"?')
      await m.close()
    })
  })

  describe('the embedded broker in a process that looks like production', function () {
    function warnings (options: Parameters<typeof createMessaging>[0] = {}): string[] {
      const logger = new RecordingLogger()
      createMessaging({ ...options, logger })
      return logger.messages('warn')
    }
    beforeEach(function () { resetMemoryWarning() })

    it('logs one warning, once per process, when a broker URL variable is set', function () {
      process.env.REDIS_URL = 'redis://cache:6379'
      const first = warnings({ broker: 'memory' })
      expect(first).to.have.length(1)
      expect(first[0]).to.contain('embedded').and.to.contain('REDIS_URL')
      expect(warnings({ broker: 'memory' })).to.deep.equal([])
    })

    it('also for NODE_ENV=production, or any *_URL variable holding a broker URL', function () {
      process.env.NODE_ENV = 'production'
      expect(warnings()[0]).to.contain('NODE_ENV')
      resetMemoryWarning()
      delete process.env.NODE_ENV
      process.env.ORDERS_BUS_URL = 'amqps://app:pw@mq.internal'
      expect(warnings()[0]).to.contain('ORDERS_BUS_URL')
    })

    it('says nothing in a development process with no broker variable', function () {
      delete process.env.NODE_ENV
      expect(warnings({ broker: 'memory' })).to.deep.equal([])
    })
  })

  it('configureMessaging sets the process default used by getMessaging, getProducer and publishEvent', async function () {
    const m = configureMessaging({ logger: false, source: 'svc' })
    expect(getMessaging()).to.equal(m)
    expect(getProducer()).to.equal(m.producer)
    const topic = randomName()
    const sent = await publishEvent('thing.done', { a: 1 }, { topic })
    const [entry] = sharedMemoryStore().entries(topic)
    expect(JSON.parse(entry!.value.toString())).to.deep.equal(sent)
    await m.close()
  })

  it('getMessaging creates a default from the environment when none was configured', function () {
    expect(getMessaging()).to.be.instanceOf(Messaging)
    expect(getMessaging()).to.equal(getMessaging())
  })
})

describe('choosing the adapter', function () {
  it('broker also takes a Broker instance (an adapter of your own): events go through it, health names its kind, close() closes it', async function () {
    const store = new MemoryStore()
    const inner = new MemoryBroker({ retain: 100 }, store)
    let closed = false
    // A user's adapter: any object that implements the Broker contract.
    const custom: Broker = {
      kind: 'nats',
      connect: async () => await inner.connect(),
      publish: async (messages) => await inner.publish(messages),
      subscribe: async (options, onDelivery) => await inner.subscribe(options, onDelivery),
      health: async () => ({ ok: true, broker: 'nats', detail: 'in-process test adapter' }),
      close: async () => { closed = true; await inner.close() }
    }
    const topic = randomName('custom-adapter')
    const m = createMessaging({ broker: custom, logger: false })
    expect(m.options.broker).to.equal('nats')
    const received: unknown[] = []
    const runner = await startConsumers({ messaging: m, signals: false, handlers: [messageHandler({ topic, group: 'g' }, async (data) => { received.push(data) })] })
    await m.publishEvent('thing.done', { n: 1 }, { topic })
    while (received.length === 0) await new Promise(resolve => setTimeout(resolve, 5))
    expect(received).to.deep.equal([{ n: 1 }])
    expect(store.entries(topic)).to.have.length(1)
    expect((await m.health()).broker).to.equal('nats')
    await runner.stop()
    await m.close()
    expect(closed).to.equal(true)
  })

  it('a logger that is not a logger (pino options such as { level }, true, a string) is a ConfigError at creation, not a crash at the first log line', function () {
    // Fastify's own `logger: { level: "warn" }` is options for pino; Herald takes a logger instance.
    for (const logger of [{ level: 'warn' }, true, 'warn', { info () {}, warn () {} }]) {
      const err = configError(() => createMessaging({ broker: 'memory', logger: logger as never }))
      expect(err.option, JSON.stringify(logger)).to.equal('logger')
      expect(err.message).to.include('a pino-compatible logger').and.include('false')
    }
    const partial = configError(() => createMessaging({ broker: 'memory', logger: { info () {}, warn () {} } as never }))
    expect(partial.message).to.include('an object, but it has no debug, error methods')
    const level = configError(() => createMessaging({ broker: 'memory', logger: { level: 'warn' } as never }))
    expect(level.message).to.include('HERALD_LOG_LEVEL=warn')
  })

  it('an object given as broker that lacks a Broker method is a ConfigError naming what is missing', function () {
    const err = configError(() => createMessaging({ broker: { kind: 'nats', connect: async () => {} } as unknown as Broker, logger: false }))
    expect(err.option).to.equal('broker')
    expect(err.message).to.include('publish, subscribe, health, close').and.include('Writing an adapter')
  })

  it('a Broker instance with broker options beside it is a ConfigError: those options would be ignored', function () {
    const err = configError(() => createMessaging({ broker: new MemoryBroker({ retain: 1 }, new MemoryStore()), url: 'redis://127.0.0.1:6379', logger: false }))
    expect(err.option).to.equal('url')
  })

  for (const [broker, pkg] of [['kafka', 'kafkajs'], ['rabbitmq', 'amqplib'], ['redis', 'ioredis']] as const) {
    it(`a ${broker} broker whose client (${pkg}) is not installed fails connect() with a ConfigError naming the package and \`npm i ${pkg}\``, function () {
      this.timeout(30_000)
      // A resolve hook makes the client package unresolvable, as in a project that did not install it.
      const hook = `export async function resolve (specifier, context, next) { if (specifier === ${JSON.stringify(pkg)} || specifier.startsWith(${JSON.stringify(pkg + '/')})) { const e = new Error("Cannot find package '${pkg}' imported from " + context.parentURL); e.code = 'ERR_MODULE_NOT_FOUND'; throw e } return next(specifier, context) }`
      const script = `
        import { register } from 'node:module'
        register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}))
        const { createMessaging, ConfigError } = await import(${JSON.stringify(new URL('../lib/index.ts', import.meta.url).href)})
        const m = createMessaging({ broker: ${JSON.stringify(broker)}, logger: false, connectTimeout: 2000 })
        try { await m.connect(); console.log('connected') } catch (err) { console.log(JSON.stringify({ config: err instanceof ConfigError, code: err.code, message: err.message })) }
        await m.close()
      `
      const out = spawnSync(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8', timeout: 25_000 })
      const line = out.stdout.trim().split('\n').pop() ?? ''
      expect(line, out.stderr).to.match(/^\{/)
      const result = JSON.parse(line) as { config: boolean, code: string, message: string }
      expect(result.config).to.equal(true)
      expect(result.code).to.equal('HERALD_CONFIG')
      expect(result.message).to.include(pkg).and.include(`npm i ${pkg}`)
      expect(result.message).not.to.include('ERR_MODULE_NOT_FOUND')
    })
  }
})

describe('the event envelope', function () {
  it('is {id, name, data, timestamp, source} JSON with the event-* and content-type headers', async function () {
    const m = createMessaging({ broker: 'memory', logger: false, source: 'users-service' })
    const topic = randomName()
    const sent = await m.publishEvent('user.created', { id: 1, email: 'a@b.c' }, { topic, key: '1', headers: { 'x-request-id': 'r1' } })
    expect(sent.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(sent.timestamp).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
    const [entry] = sharedMemoryStore().entries(topic)
    expect(Object.keys(JSON.parse(entry!.value.toString()))).to.deep.equal(['id', 'name', 'data', 'timestamp', 'source'])
    expect(JSON.parse(entry!.value.toString())).to.deep.equal({ id: sent.id, name: 'user.created', data: { id: 1, email: 'a@b.c' }, timestamp: sent.timestamp, source: 'users-service' })
    expect(entry!.key).to.equal('1')
    expect(entry!.headers).to.deep.equal({
      'x-request-id': 'r1',
      'content-type': 'application/json',
      'event-name': 'user.created',
      'event-id': sent.id,
      'event-source': 'users-service'
    })
    await m.close()
  })

  it('producer.send puts the message JSON on the wire unwrapped', async function () {
    const m = createMessaging({ broker: 'memory', logger: false })
    const topic = randomName()
    await m.producer.send(topic, { plain: [1, 2] }, { key: 'k', headers: { a: 'b' } })
    const [entry] = sharedMemoryStore().entries(topic)
    expect(entry!.value.toString()).to.equal('{"plain":[1,2]}')
    expect(entry!.headers).to.deep.equal({ 'content-type': 'application/json', a: 'b' })
    await m.close()
  })

  it('a value JSON cannot carry is refused with a clear error', async function () {
    const m = createMessaging({ broker: 'memory', logger: false })
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    let error: unknown
    try { await m.producer.send(randomName(), cyclic) } catch (err) { error = err }
    expect(String(error)).to.contain('cannot be serialised as JSON')
    await m.close()
  })
})

describe('the producer', function () {
  it('coalesces sends made together into one broker batch and resolves each once acknowledged', async function () {
    const m = createMessaging({ broker: 'memory', logger: false })
    const broker = await m.broker()
    const batches: number[] = []
    const publish = broker.publish.bind(broker)
    broker.publish = async (messages) => { batches.push(messages.length); return await publish(messages) }
    const topic = randomName()
    await Promise.all([...Array(50).keys()].map(n => m.producer.send(topic, { n }, { key: String(n % 3) })))
    expect(batches.reduce((a, b) => a + b, 0)).to.equal(50)
    expect(batches.length, 'fewer requests than sends').to.be.below(5)
    expect(sharedMemoryStore().entries(topic).map(e => JSON.parse(e.value.toString()).n)).to.deep.equal([...Array(50).keys()])
    await m.close()
  })

  it('close() sends what is pending, then refuses new sends', async function () {
    const m = createMessaging({ broker: 'memory', logger: false })
    const topic = randomName()
    const pending = m.producer.send(topic, { last: true })
    await m.close()
    await pending
    expect(sharedMemoryStore().entries(topic)).to.have.length(1)
    let error: unknown
    try { await m.publishEvent('late', {}, { topic }) } catch (err) { error = err }
    expect(String(error)).to.match(/closed/)
  })

  it('rejects a send when the broker does not acknowledge within publishTimeout', async function () {
    const m = createMessaging({ broker: 'memory', logger: false, publishTimeout: 50 })
    const broker = await m.broker()
    broker.publish = async () => await new Promise(() => {}) // a broker that never answers
    let error: unknown
    try { await m.publishEvent('user.created', {}, { topic: 'x' }) } catch (err) { error = err }
    expect(String(error)).to.contain('could not publish event "user.created" to topic "x"').and.to.contain('publishTimeout (50 ms)')
  })
})

describe('the @event decorator', function () {
  it('publishes the method result as the event data once the method resolves, and returns the result', async function () {
    const messaging = createMessaging({ broker: 'memory', logger: false, source: 'users' })
    const topic = randomName()
    class Users {
      @event('user.created', { topic, keyField: 'id', messaging })
      async create (email: string): Promise<{ id: number, email: string }> {
        return { id: 42, email }
      }

      @event('user.pinged', { topic, includeResult: false, messaging })
      async ping (): Promise<string> { return 'pong' }
    }
    const users = new Users()
    expect(await users.create('a@b.c')).to.deep.equal({ id: 42, email: 'a@b.c' })
    expect(await users.ping()).to.equal('pong')
    const entries = sharedMemoryStore().entries(topic)
    expect(entries.map(e => JSON.parse(e.value.toString()).name)).to.deep.equal(['user.created', 'user.pinged'])
    expect(JSON.parse(entries[0]!.value.toString()).data).to.deep.equal({ id: 42, email: 'a@b.c' })
    expect(entries[0]!.key).to.equal('42')
    expect(JSON.parse(entries[1]!.value.toString()).data).to.deep.equal({})
    await messaging.close()
  })

  it('makes the call reject when the event cannot be published', async function () {
    const messaging = createMessaging({ broker: 'memory', logger: false })
    await messaging.close()
    class Users {
      @event('user.created', { messaging })
      async create (): Promise<object> { return {} }
    }
    let error: unknown
    try { await new Users().create() } catch (err) { error = err }
    expect(String(error)).to.contain('could not publish event "user.created"')
  })

  it('rejects a bad config when the class is defined', function () {
    expect(() => event('', {})).to.throw(/name/)
  })
})
