/**
 * Consumers and producers reconnect by themselves after a broker restart or a dropped
 * connection, with backoff, and say so once per outage rather than once per message:
 * Kafka restarted (its own data persists), RabbitMQ connections closed by the server or
 * cut by a loopback proxy, a private Redis restarted (its AOF keeps the streams and
 * groups), and the shared Redis reached through a proxy that cuts every connection.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { createMessaging, messageHandler, startConsumers, type Context, type Messaging, type MessagingOptions, type Runner } from '../../lib/index.js'
import type { BrokerKind } from '../../lib/brokers/broker.js'
import { cleanUpRun } from '../cleanup.js'
import { brokerSelected, eventually, randomName, sleep } from '../helpers.js'
import { faultOptions, publishJobs, queuesOf } from './fault-setup.js'
import { PrivateRedis } from './private-redis.js'
import { RecordingLogger, type LogRecord } from '../support/recording-logger.js'
import { TcpProxy } from '../support/tcp-proxy.js'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname

/** Messages published while the broker is away. */
const DURING = 20
/** How long a handler takes, so that some run when the outage begins. */
const HANDLER_MS = 300
/** Warn and error lines one outage may cost, however many messages it spans. */
const MAX_OUTAGE_LINES = 3

interface Outage {
  /** Takes the broker away (or cuts the connections). */
  begin(): Promise<void>
  /** Brings it back; resolves once it answers again. */
  end(): Promise<void>
  /** How long the broker stays away, in ms. */
  lasts: number
}

interface OutageResult {
  logger: RecordingLogger
  /** Warn and error records from the outage's start on. */
  problems: LogRecord[]
  /** Publishes made during the outage that the broker acknowledged (the rest failed, as they may). */
  acknowledgedDuring: number
  handled: Map<string, number>
  /** Tries it took the first publish after the outage to be acknowledged (Kafka may still be electing leaders). */
  triesAfter: number
  /** From the broker's return to every acknowledged message handled, in ms. */
  recoveryMs: number
}

/**
 * Consumes a topic in one process, publishes before, during and after an outage, and checks
 * that every acknowledged publish is handled and that publishing works again afterwards.
 */
async function throughOutage (kind: BrokerKind, extra: MessagingOptions, outage: Outage, names: { topic: string, group: string }): Promise<OutageResult> {
  const logger = new RecordingLogger()
  const handled = new Map<string, number>()
  const started = new Set<string>()
  const options = faultOptions(kind, { ...extra, logger, publishTimeout: 60_000 })
  const messaging: Messaging = createMessaging(options)
  let runner: Runner | undefined
  try {
    runner = await startConsumers({
      messaging,
      signals: false,
      handlers: [messageHandler({ topic: names.topic, group: names.group, concurrency: 5, retryDelay: 200 }, async (_data: unknown, ctx: Context) => {
        started.add(ctx.event!.id)
        await sleep(HANDLER_MS)
        handled.set(ctx.event!.id, (handled.get(ctx.event!.id) ?? 0) + 1)
      })]
    })
    const first = await publishJobs(messaging, names.topic, 5)
    await eventually(() => [...first.values()].every(id => handled.has(id)), 'the messages published first')
    // The outage comes while handlers run: their messages cannot be acknowledged until the broker is back.
    const inFlight = await publishJobs(messaging, names.topic, 15, 50)
    await eventually(() => [...inFlight.values()].filter(id => started.has(id) && !handled.has(id)).length >= 2, 'handlers running')
    const before = new Map([...first, ...inFlight])

    const began = Date.now()
    logger.info({}, 'test: the outage begins')
    await outage.begin()
    logger.info({}, 'test: the broker is away')
    const during = Promise.allSettled(Array.from({ length: DURING }, async (_v, i) => await messaging.publishEvent('fault.job', { n: 100 + i }, { topic: names.topic })))
    await sleep(outage.lasts)
    await outage.end()
    logger.info({}, 'test: the broker is back')
    const results = await during
    logger.info({}, 'test: publishes made during the outage are answered')
    const acknowledged = results.flatMap(r => r.status === 'fulfilled' ? [r.value.id] : [])

    const back = Date.now()
    let triesAfter = 0
    let after: Map<number, string> | undefined
    while (after === undefined) {
      triesAfter++
      try {
        after = await publishJobs(messaging, names.topic, 5, 200)
      } catch (err) {
        if (Date.now() - back > 60_000) throw err
        logger.info({ err: err instanceof Error ? err.message : String(err) }, 'test: publishing after the outage failed; trying again')
        await sleep(1_000)
      }
    }
    logger.info({}, 'test: published after the outage')
    const expected = [...before.values(), ...acknowledged, ...after.values()]
    await eventually(() => expected.every(id => handled.has(id)), 'every acknowledged message handled after the outage', 60_000)
    logger.info({}, 'test: all handled')
    if (process.env.HERALD_FAULTS_DEBUG === '1') process.stderr.write(`--- log since the outage (${new Date(began).toISOString()}) ---\n${logger.describe(readable(logger).filter(r => r.at >= began))}\n`)
    return { logger, problems: logger.problems(began), acknowledgedDuring: acknowledged.length, handled, triesAfter, recoveryMs: Date.now() - back }
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- log ---\n${logger.describe(readable(logger))}`)
  } finally {
    await runner?.stop()
    await messaging.close()
  }
}

/** The log without kafkajs's own debug lines (thousands of them in a Kafka restart). */
function readable (logger: RecordingLogger): LogRecord[] {
  return logger.records.filter(r => r.level !== 'debug' || !('kafkajs' in r.fields))
}

/** Once RabbitMQ or Redis answers again, the very next publish goes through. */
function expectPublishingAtOnce (result: OutageResult): void {
  expect(result.triesAfter, `tries of the first publish after the outage:\n${result.logger.describe(readable(result.logger))}`).to.equal(1)
}

function expectFewOutageLines (result: OutageResult, outages = 1): void {
  expect(result.problems.length, `warn/error lines for ${outages} outage(s):\n${result.logger.describe(result.problems)}`).to.be.at.most(MAX_OUTAGE_LINES * outages)
}

describe('faults: reconnection', function () {
  this.timeout(120_000)

  if (brokerSelected('kafka')) {
    describe('kafka', function () {
      after(async function () { await cleanUpRun('kafka', []) })

      it('consumers and the producer carry on after Kafka restarts, logging the outage once, not once per message', async function () {
        // Stopping and starting Kafka takes 10 to 40 s here (more with many partitions on disk).
        this.timeout(240_000)
        const kafka = async (command: 'stop' | 'start'): Promise<void> => { await run('bash', ['scripts/kafka.sh', command], { cwd: ROOT, timeout: 120_000 }) }
        const names = { topic: randomName('faults-rc'), group: randomName('g') }
        try {
          const result = await throughOutage('kafka', {}, { begin: async () => await kafka('stop'), end: async () => await kafka('start'), lasts: 1_000 }, names)
          expectFewOutageLines(result)
          this.test!.title += ` [${result.acknowledgedDuring}/${DURING} acknowledged during, ${result.problems.length} warn/error lines, ${result.triesAfter} tries to publish after, all handled ${result.recoveryMs} ms after Kafka was back]`
        } finally {
          await kafka('start')
        }
      })
    })
  }

  if (brokerSelected('rabbitmq')) {
    describe('rabbitmq', function () {
      const queues: string[] = []
      after(async function () { await cleanUpRun('rabbitmq', queues) })

      /** Closes this process's connections named `<source> (publish|consume)` from the server side. */
      async function closeConnectionsOf (source: string): Promise<number> {
        const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'])
        const pids = stdout.split('\n').filter(l => l.includes(`{"connection_name","${source} (`)).map(l => l.split('\t')[0]!)
        for (const pid of pids) await run('rabbitmqctl', ['close_connection', pid, 'closed by the herald fault tests'])
        return pids.length
      }

      it('after the server closes the connections, consumers and the producer reconnect, logging it once per connection', async function () {
        const names = { topic: randomName('faults-rc'), group: randomName('g') }
        queues.push(...queuesOf(names.topic, names.group))
        const source = randomName('faults-src')
        let closed = 0
        const result = await throughOutage('rabbitmq', { source }, {
          begin: async () => { closed = await closeConnectionsOf(source) },
          end: async () => {},
          lasts: 0
        }, names)
        expect(closed, 'connections closed by the server').to.equal(2)
        expectFewOutageLines(result)
        expectPublishingAtOnce(result)
        this.test!.title += ` [${result.problems.length} warn/error lines]`
      })

      it('connections cut and dropped for 3 s (through a proxy) are reconnected with backoff; consuming and publishing resume', async function () {
        const names = { topic: randomName('faults-rc'), group: randomName('g') }
        queues.push(...queuesOf(names.topic, names.group))
        const proxy = new TcpProxy({ targetPort: 5672 })
        const port = await proxy.listen()
        try {
          const result = await throughOutage('rabbitmq', { url: `amqp://guest:guest@127.0.0.1:${port}` }, {
            begin: async () => { proxy.cut('until resumed') },
            end: async () => { proxy.resume() },
            lasts: 3_000
          }, names)
          expectFewOutageLines(result)
          expectPublishingAtOnce(result)
          // Two connections, each waiting 250 ms, 500 ms, 1 s, 2 s… between attempts: a handful each, not one per message or per retry of each subscription.
          expect(proxy.refused, 'connection attempts while RabbitMQ was away').to.be.within(2, 12)
          this.test!.title += ` [${result.acknowledgedDuring}/${DURING} acknowledged during, ${result.problems.length} warn/error lines, ${proxy.refused} connection attempts in 3 s]`
        } finally {
          await proxy.close()
        }
      })
    })
  }

  if (brokerSelected('redis')) {
    describe('redis', function () {
      after(async function () { await cleanUpRun('redis', []) })

      it('a private Redis restarted (AOF): the stream and group come back, consumers and the producer carry on', async function () {
        const redis = await PrivateRedis.start()
        const names = { topic: randomName('faults-rc'), group: randomName('g') }
        try {
          const result = await throughOutage('redis', { url: redis.url }, {
            begin: async () => await redis.stopServer('SIGKILL'),
            end: async () => await redis.startServer(),
            lasts: 5_000
          }, names)
          expectFewOutageLines(result)
          expectPublishingAtOnce(result)
          this.test!.title += ` [${result.acknowledgedDuring}/${DURING} acknowledged during, ${result.problems.length} warn/error lines]`
        } finally {
          await redis.destroy()
        }
      })

      it('every connection cut by a proxy, dropped for 2 s: consumers and the producer reconnect', async function () {
        const proxy = new TcpProxy({ targetPort: 6379 })
        const port = await proxy.listen()
        const names = { topic: randomName('faults-rc'), group: randomName('g') }
        try {
          const result = await throughOutage('redis', { url: `redis://127.0.0.1:${port}` }, {
            begin: async () => { proxy.cut('until resumed') },
            end: async () => { proxy.resume() },
            lasts: 2_000
          }, names)
          expectFewOutageLines(result)
          expectPublishingAtOnce(result)
          this.test!.title += ` [${result.acknowledgedDuring}/${DURING} acknowledged during, ${result.problems.length} warn/error lines, ${proxy.refused} connection attempts in 2 s]`
        } finally {
          await proxy.close()
        }
      })
    })
  }
})
