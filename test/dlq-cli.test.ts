import { expect } from 'chai'
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createMessaging, messageHandler, NonRetriableError, startConsumers, type Messaging, type Runner } from '../lib/index.js'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { cleanUpRun } from './cleanup.js'
import { brokerOptions, eventually, randomName, selectedBrokers } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'dist/bin/herald.js')

interface Run { code: number, stdout: string, stderr: string }

/** `node dist/bin/herald.js dlq …`, with only the environment given: the child, and its end. */
function start (args: string[], env: Record<string, string> = {}): { child: ChildProcess, done: Promise<Run> } {
  let child: ChildProcess | undefined
  const done = new Promise<Run>((resolve, reject) => {
    child = execFile(process.execPath, [BIN, 'dlq', ...args], { cwd: ROOT, timeout: 30_000, env: { PATH: process.env.PATH ?? '', HERALD_LOG_LEVEL: 'silent', ...env } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : (err as { code?: unknown }).code
      if (typeof code === 'number') resolve({ code, stdout, stderr })
      else if (child?.signalCode !== null) resolve({ code: -1, stdout, stderr })
      else reject(err ?? new Error('no exit code'))
    })
  })
  return { child: child!, done }
}

async function dlq (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return await start(args, env).done
}

const lines = (text: string): string[] => text.split('\n').filter(line => line !== '')

describe('herald dlq', function () {
  this.timeout(60_000)

  before(function () {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" first`)
  })

  describe('usage errors exit 2 with one line and a hint', function () {
    const cases: Array<[string[], string]> = [
      [['list', '--topic', 't'], 'herald: --group G is needed: the group whose dead letters to read'],
      [['list', '--group', 'g'], 'herald: --topic T is needed: the topic whose group failed'],
      [['show', '--topic', 't', '--group', 'g'], 'herald: unknown dlq command "show"; the dlq commands are: list, replay, purge'],
      [[], 'herald: give what to do: herald dlq list|replay|purge --topic T --group G'],
      [['replay', '--topic', 't', '--group', 'g', '--rate', 'fast'], 'herald: --rate must be a number of letters per second above 0, e.g. 10; got "fast"'],
      [['list', '--topic', 't', '--group', 'g', '--limit', '0'], 'herald: --limit must be a whole number of at least 1, e.g. 10; got "0"'],
      [['purge', '--topic', 't', '--group', 'g', '--dry-run'], 'herald: --rate, --max-replays and --dry-run are options of "herald dlq replay" (purge counts without --yes)']
    ]
    for (const [args, message] of cases) {
      it(`herald dlq ${args.join(' ')}`, async function () {
        const { code, stdout, stderr } = await dlq(args)
        expect(code).to.equal(2)
        expect(stdout).to.equal('')
        expect(lines(stderr)).to.deep.equal([message, 'run "herald --help" for usage'])
      })
    }
  })

  for (const kind of selectedBrokers().filter(k => k !== 'memory')) {
    describe(`on ${kind}`, function () {
      const open: Array<Messaging | Runner> = []
      const queues: string[] = []
      const env: Record<string, string> = {
        kafka: { KAFKA_BOOTSTRAP_SERVERS: String(brokerOptions('kafka').bootstrapServers) },
        rabbitmq: { RABBITMQ_URL: String(brokerOptions('rabbitmq').url) },
        redis: { REDIS_URL: String(brokerOptions('redis').url) }
      }[kind as 'kafka' | 'rabbitmq' | 'redis']
      /** Kafka keeps order per partition only, and these keys land on different partitions. */
      const inOrder = <T>(items: T[]): T[] => kind === 'kafka' ? [...items].sort() : items

      afterEach(async function () {
        for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
      })
      after(async function () { await cleanUpRun(kind, queues) })

      /** A group that dead-letters k1 and k2 while `failing` holds them. */
      async function scene () {
        // No prefix: the CLI reads the streams by their topic's name, as a deployment without `redis.prefix` does.
        const m = createMessaging({ ...brokerOptions(kind), redis: {} })
        open.push(m)
        const topic = randomName()
        const group = randomName('g')
        const failing = new Set(['k1', 'k2'])
        const handled: string[] = []
        open.push(await startConsumers({
          messaging: m,
          signals: false,
          handlers: [messageHandler({ topic, group, maxRetries: 0 }, async (_data, ctx) => {
            if (failing.has(ctx.key ?? '')) throw new NonRetriableError(`boom ${ctx.key ?? ''}`)
            handled.push(ctx.key ?? '')
          })]
        }))
        queues.push(`${topic}.${group}`, `${topic}.${group}.dlq`)
        for (const key of ['k1', 'k2']) await m.publishEvent('order.placed', { key }, { topic, key })
        await eventually(async () => (await m.deadLetters({ topic, group }).list()).length === 2, 'two dead letters')
        const args = ['--topic', topic, '--group', group, '--broker', kind]
        return { m, topic, group, failing, handled, args }
      }

      it('list prints the count by reason, a table of the letters and the total; --json the same for scripts', async function () {
        const { topic, group, args } = await scene()
        const { code, stdout, stderr } = await dlq(['list', ...args], env)
        expect(code, stderr).to.equal(0)
        const out = lines(stdout)
        expect(out.slice(0, 3)).to.deep.equal([`dead letters in ${topic}.${group}.dlq, by reason:`, '  1  NonRetriableError: boom k1', '  1  NonRetriableError: boom k2'])
        expect(out[3]).to.match(/^ID +KEY +ATTEMPTS +FAILED AT +EVENT +SIZE +REASON +PREVIEW$/)
        const k1 = out.slice(4, 6).find(l => l.includes('boom k1'))
        const k2 = out.slice(4, 6).find(l => l.includes('boom k2'))
        expect(k1).to.match(/ k1 +1 +\d{4}-\d\d-\d\dT[\d:.]+Z +order\.placed +\d+ +NonRetriableError: boom k1 +\{"id":"/)
        expect(k2).to.contain('NonRetriableError: boom k2')
        expect(out[6]).to.equal('total: 2')

        const json = await dlq(['list', ...args, '--json'], env)
        expect(json.code).to.equal(0)
        const first = lines((await dlq(['list', ...args, '--limit', '1'], env)).stdout)
        expect(first[0]).to.equal(`the first 1 of 2 dead letters in ${topic}.${group}.dlq, by reason:`)
        expect(first.at(-1)).to.equal('total: 2 (these are the first 1; raise --limit to see more)')

        const parsed = JSON.parse(json.stdout) as { total: number, byReason: Record<string, number>, letters: Array<{ key: string, reason: string }> }
        expect(parsed.total).to.equal(2)
        expect(inOrder(parsed.letters.map(l => l.key))).to.deep.equal(['k1', 'k2'])
        expect(parsed.byReason).to.deep.equal({ 'NonRetriableError: boom k1': 1, 'NonRetriableError: boom k2': 1 })
      })

      it('purge without --yes only counts and says to add --yes; with --yes it empties', async function () {
        const { topic, group, args } = await scene()
        const dry = await dlq(['purge', ...args], env)
        expect(dry.code, dry.stderr).to.equal(0)
        expect(lines(dry.stdout)).to.deep.equal([
          `dry run: 2 dead letters would be purged from ${topic}.${group}.dlq, by reason:`,
          '  1  NonRetriableError: boom k1', '  1  NonRetriableError: boom k2',
          'nothing was removed: add --yes to remove them'
        ])
        const purged = await dlq(['purge', ...args, '--yes', '--filter', 'boom k2'], env)
        expect(lines(purged.stdout)[0]).to.equal(`1 dead letters purged from ${topic}.${group}.dlq, by reason:`)
        expect((await dlq(['purge', ...args, '--yes'], env)).code).to.equal(0)
        expect(lines((await dlq(['list', ...args], env)).stdout)).to.deep.equal([`no dead letters in ${topic}.${group}.dlq`])
      })

      it('replay: --dry-run counts, replay sends to the group, a second replay replays nothing', async function () {
        const { topic, group, args, failing, handled } = await scene()
        const dry = await dlq(['replay', ...args, '--dry-run'], env)
        expect(dry.code, dry.stderr).to.equal(0)
        expect(lines(dry.stdout)[0]).to.equal(`dry run: 2 dead letters would be replayed to group ${group} of topic ${topic}, by reason:`)
        failing.clear()
        const run = await dlq(['replay', ...args, '--rate', '20'], env)
        expect(run.code, run.stderr).to.equal(0)
        expect(lines(run.stdout)[0]).to.equal(`2 dead letters replayed to group ${group} of topic ${topic}, by reason:`)
        await eventually(() => handled.length === 2, 'the group to handle both')
        expect(inOrder(handled)).to.deep.equal(['k1', 'k2'])
        const again = await dlq(['replay', ...args], env)
        expect(lines(again.stdout)).to.deep.equal([`0 dead letters replayed to group ${group} of topic ${topic}`])
      })

      it('a replay killed half-way (SIGKILL) resumes with the next run: every letter reaches the group, at most the one in flight twice', async function () {
        const { m, topic, args, failing, handled } = await scene()
        failing.clear()
        // One letter every 2 s: the kill lands between the first and the second.
        const first = start(['replay', ...args, '--rate', '0.5'], env)
        await eventually(() => handled.length >= 1, 'the first replayed letter to be handled')
        first.child.kill('SIGKILL')
        expect((await first.done).code, 'killed before it ended').to.equal(-1)
        const second = await dlq(['replay', ...args], env)
        expect(second.code, second.stderr).to.equal(0)
        await eventually(() => handled.includes('k1') && handled.includes('k2'), 'both letters to be handled')
        await m.publishEvent('marker', {}, { topic, key: 'marker' })
        await eventually(() => handled.includes('marker'), 'the marker')
        expect(handled.length).to.be.at.most(4)
        expect(lines((await dlq(['list', ...args], env)).stdout)[0]).to.match(/^no dead letters in /)
      })

      if (kind !== 'redis') {
        it('a dead-letter destination that does not exist: exit 1, one line naming it', async function () {
          const missing = randomName('no-such-topic')
          const { code, stdout, stderr } = await dlq(['list', '--topic', missing, '--group', 'nobody', '--broker', kind], env)
          expect(code).to.equal(1)
          expect(stdout).to.equal('')
          expect(lines(stderr)).to.deep.equal([kind === 'rabbitmq'
            ? `herald: there is no dead-letter queue "${missing}.nobody.dlq" on RabbitMQ at amqp://guest:***@127.0.0.1:5672: check the topic and group (Herald declares it when the group first subscribes)`
            : `herald: there is no dead-letter topic "${missing}.nobody.dlq" on Kafka at ${env.KAFKA_BOOTSTRAP_SERVERS!}: check the topic and group (Herald creates it when the group first subscribes)`])
        })
      }
    })
  }
})
