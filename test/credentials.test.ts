// A password in RABBITMQ_URL, REDIS_URL or Kafka's SASL settings never appears in a log
// line, an error (with its causes, as `inspect` prints it), health() or a dead-letter header.
// The connection errors are real: the brokers on this machine refuse the credentials.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { inspect } from 'node:util'
import { Redis } from 'ioredis'
import {
  createMessaging, DLQ_HEADERS, messageHandler, startConsumers, type Messaging, type MessagingOptions, type Runner
} from '../lib/index.js'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { redactText, redactUrl, rememberSecrets } from '../lib/redact.js'
import { cleanUpRun } from './cleanup.js'
import { brokerOptions, brokerSelected, eventually, randomName, RUN_ID } from './helpers.js'
import { RecordingLogger } from './support/recording-logger.js'

const SECRET = 'S3cr3t-pass'
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const LIB_URL = pathToFileURL(join(ROOT, 'lib/index.ts')).href

/** Everything a value holds as `inspect` shows it: causes, stacks, hidden properties. */
const everything = (value: unknown): string => inspect(value, { depth: Infinity, showHidden: true })

/** The test broker's URL with other credentials. */
function withCredentials (url: string, user: string, password: string): string {
  const parsed = new URL(url)
  parsed.username = user
  parsed.password = password
  return parsed.toString()
}

interface RefusedCase {
  kind: BrokerKind
  what: string
  options: () => MessagingOptions
  reason: RegExp
  /** The error code of a refused login (not an unreachable broker), when the broker says so. */
  code?: string
}

const refused: RefusedCase[] = [
  {
    kind: 'rabbitmq',
    what: 'a wrong password in the URL (ACCESS_REFUSED)',
    options: () => ({ ...brokerOptions('rabbitmq'), url: withCredentials(String(brokerOptions('rabbitmq').url), new URL(String(brokerOptions('rabbitmq').url)).username || 'guest', SECRET) }),
    reason: /RabbitMQ at amqp:\/\/[^:]+:\*\*\*@\S+ refused the login: .*ACCESS.REFUSED.+check the user name and password in the URL/,
    code: 'HERALD_BROKER_AUTH'
  },
  {
    kind: 'redis',
    what: 'an unknown user and password in the URL (WRONGPASS)',
    options: () => ({ ...brokerOptions('redis'), url: withCredentials(String(brokerOptions('redis').url), 'herald-nobody', SECRET) }),
    reason: /Redis at redis:\/\/herald-nobody:\*\*\*@\S+ refused the login \(.*WRONGPASS/,
    code: 'HERALD_BROKER_AUTH'
  },
  {
    kind: 'kafka',
    what: 'SASL/PLAIN credentials against a listener without SASL',
    options: () => ({
      ...brokerOptions('kafka'),
      kafka: { client: { sasl: { mechanism: 'plain', username: 'herald', password: SECRET }, retry: { retries: 1, initialRetryTime: 100 }, connectionTimeout: 3000 } }
    }),
    reason: /could not reach Kafka at .+SASL/
  }
]

describe('credentials', function () {
  this.timeout(30_000)

  describe('a connection refused because of its credentials', function () {
    for (const c of refused) {
      if (!brokerSelected(c.kind)) continue
      it(`${c.kind}, ${c.what}: connect(), a publish, startConsumers() and health() say so, and no error, cause or log line shows the password`, async function () {
        const logger = new RecordingLogger()
        const m = createMessaging({ ...c.options(), logger })
        const errors: unknown[] = []
        try {
          for (const step of [
            async () => await m.connect(),
            async () => await m.publishEvent('user.created', { id: 1 }, { topic: randomName() }),
            async () => await startConsumers({ messaging: m, handlers: [messageHandler({ topic: randomName(), group: randomName('g') }, async () => {})], signals: false })
          ]) {
            errors.push(await step().then(() => new Error('expected the step to fail'), (err: unknown) => err))
          }
          const health = await m.health()
          expect(health.ok).to.equal(false)
          expect(health.detail).to.match(c.reason).and.not.to.contain(SECRET)
        } finally {
          await m.close()
        }
        expect(errors).to.have.length(3)
        for (const err of errors) {
          expect((err as Error).message).to.match(c.reason)
          const e = err as { code?: string, cause?: { code?: string } }
          if (c.code !== undefined) expect(e.code === 'HERALD_PUBLISH' ? e.cause?.code : e.code, (err as Error).message).to.equal(c.code)
          expect(everything(err)).not.to.contain(SECRET)
        }
        for (const record of logger.records) expect(everything(record)).not.to.contain(SECRET)
      })
    }
  })

  describe('a password Herald was configured with', function () {
    // A Redis user of this run, so that a connection with a password in the URL succeeds.
    const user = `herald-test-${RUN_ID}`
    let url = ''
    const open: Array<Messaging | Runner> = []

    before(async function () {
      if (!brokerSelected('redis')) return
      const admin = new Redis(String(brokerOptions('redis').url), { lazyConnect: true })
      await admin.connect()
      try {
        await admin.call('ACL', 'SETUSER', user, 'reset', 'on', `>${SECRET}`, '~*', '&*', '+@all')
      } finally {
        admin.disconnect()
      }
      url = withCredentials(String(brokerOptions('redis').url), user, SECRET)
    })

    afterEach(async function () {
      for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
    })

    after(async function () {
      if (!brokerSelected('redis')) return
      const admin = new Redis(String(brokerOptions('redis').url), { lazyConnect: true })
      await admin.connect()
      try {
        await admin.call('ACL', 'DELUSER', user)
      } finally {
        admin.disconnect()
      }
      await cleanUpRun('redis', [])
    })

    it('is masked in the dead-letter reason and in every log line, even when a handler error quotes it bare or in a URL', async function () {
      if (!brokerSelected('redis')) this.skip()
      const logger = new RecordingLogger()
      const m = createMessaging({ ...brokerOptions('redis'), url, logger })
      open.push(m)
      const topic = randomName()
      const group = randomName('g')
      const reasons: string[] = []
      open.push(await startConsumers({
        messaging: m,
        signals: false,
        handlers: [
          messageHandler({ topic, group, maxRetries: 1, retryDelay: 10 }, async () => {
            throw new Error(`login to ${url} failed (password ${SECRET})`)
          }),
          messageHandler({ topic: `${topic}.${group}.dlq`, group: randomName('reader') }, async (_message, ctx) => {
            reasons.push(ctx.headers[DLQ_HEADERS.reason]!)
          })
        ]
      }))
      await m.producer.send(topic, { n: 1 })
      await eventually(() => reasons.length === 1, 'the dead letter')
      expect(reasons[0]).to.equal(`Error: login to ${redactUrl(url)} failed (password ***)`)
      expect(reasons[0]).to.contain(`redis://${user}:***@`)
      expect(logger.messages().some(m => m.includes('handler failed (attempt 1 of 2)'))).to.equal(true)
      expect(logger.messages().some(m => m.includes('message dead-lettered'))).to.equal(true)
      for (const record of logger.records) expect(everything(record)).not.to.contain(SECRET)
    })

    it('never reaches stderr through the default logger, at HERALD_LOG_LEVEL=debug (a child process)', async function () {
      this.timeout(60_000)
      const dir = await mkdtemp(join(tmpdir(), 'herald-credentials-'))
      try {
        const script = join(dir, 'leak-check.mts')
        await writeFile(script, CHILD_SCRIPT.replace('LIB_URL', JSON.stringify(LIB_URL)))
        const withoutLogger = (options: MessagingOptions): MessagingOptions => {
          const { logger: _logger, ...rest } = options
          return rest
        }
        const topic = randomName()
        const cases = {
          refused: refused.filter(c => brokerSelected(c.kind)).map(c => withoutLogger(c.options())),
          deadLetters: [
            { options: { broker: 'memory' }, topic, error: `cannot reach amqps://app:${SECRET}@db.internal:5671/orders` },
            ...brokerSelected('redis') ? [{ options: { ...withoutLogger(brokerOptions('redis')), url }, topic, error: `login to ${url} failed (password ${SECRET})` }] : []
          ]
        }
        const child = spawnSync(process.execPath, ['--import', 'tsx', script], {
          cwd: ROOT,
          env: { ...process.env, HERALD_LOG_LEVEL: 'debug', HERALD_TEST_CASES: JSON.stringify(cases) },
          encoding: 'utf8',
          timeout: 50_000
        })
        expect(child.status, child.stderr).to.equal(0)
        const stdout = child.stdout
        const stderr = child.stderr
        expect(stderr).to.contain('herald warn: handler failed (attempt 1 of 2)')
        expect(stderr).to.contain('herald warn: message dead-lettered')
        expect(stdout.match(/^reason: /gm) ?? []).to.have.length(cases.deadLetters.length)
        expect(stdout).to.contain('reason: Error: cannot reach amqps://app:***@db.internal:5671/orders')
        expect(stdout.match(/^error: /gm) ?? []).to.have.length(cases.refused.length * 3)
        expect(stdout).not.to.contain(SECRET)
        expect(stderr).not.to.contain(SECRET)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  })

  describe('masking', function () {
    it('masks a URL password whole, even with an unencoded @, / or # in it', function () {
      expect(redactUrl('amqp://guest:p@ss@rabbit:5672/vh')).to.equal('amqp://guest:***@rabbit:5672/vh')
      expect(redactUrl('amqp://guest:pa/ss@rabbit:5672')).to.equal('amqp://guest:***@rabbit:5672')
      expect(redactUrl('redis://:pa#ss@cache:6379/0')).to.equal('redis://:***@cache:6379/0')
      expect(redactUrl('rediss://cache:6380')).to.equal('rediss://cache:6380')
      expect(redactText('tried amqp://u:p@ss@a:1 and redis://:x/y@b:2, then "amqps://v:w@c"')).to.equal('tried amqp://u:***@a:1 and redis://:***@b:2, then "amqps://v:***@c"')
    })

    it('masks every secret Herald was configured with in any text, not ones too short to mean anything', function () {
      rememberSecrets(['kafka-sasl-9f2', 'abc'])
      expect(redactText('auth with kafka-sasl-9f2 failed, abc')).to.equal('auth with *** failed, abc')
    })
  })
})

/** Runs in a child process with the default logger (stderr): what it prints goes to stdout. */
const CHILD_SCRIPT = `
import { inspect } from 'node:util'
import { createMessaging, DLQ_HEADERS, messageHandler, startConsumers } from LIB_URL

const { refused, deadLetters } = JSON.parse(process.env.HERALD_TEST_CASES)
const show = (err) => inspect(err, { depth: Infinity, showHidden: true }).replace(/\\n/g, ' ')

for (const options of refused) {
  const m = createMessaging(options)
  const handler = messageHandler({ topic: 'herald-never-created', group: 'herald-never-created' }, async () => {})
  for (const step of [() => m.connect(), () => m.publishEvent('x', {}, { topic: 'herald-never-created' }), () => startConsumers({ messaging: m, handlers: [handler], signals: false })]) {
    try {
      await step()
      console.log('unexpected success')
    } catch (err) {
      console.log('error: ' + show(err))
    }
  }
  console.log('health: ' + JSON.stringify(await m.health()))
  await m.close()
}

for (const { options, topic, error } of deadLetters) {
  const m = createMessaging(options)
  let reason
  const runner = await startConsumers({
    messaging: m,
    signals: false,
    handlers: [
      messageHandler({ topic, group: 'g', maxRetries: 1, retryDelay: 10 }, async () => { throw new Error(error) }),
      messageHandler({ topic: topic + '.g.dlq', group: 'reader' }, async (_message, ctx) => { reason = ctx.headers[DLQ_HEADERS.reason] })
    ]
  })
  await m.producer.send(topic, { n: 1 })
  for (let i = 0; reason === undefined && i < 500; i++) await new Promise(resolve => setTimeout(resolve, 20))
  console.log('reason: ' + reason)
  await runner.stop()
  await m.close()
}
`
