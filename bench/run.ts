// The benchmark runner: `npm run bench [-- --quick] [--broker kafka,redis] [--scenario e2e,http] [--rounds N]`.
// Every contender runs in fresh child processes, rounds are interleaved (each round runs
// every contender once, in a rotated order), every measure is verified against what the
// destination holds, and the medians are printed as a markdown table of ratios.
import { randomBytes } from 'node:crypto'
import { cleanup, count, countQueueOf, prepare } from './brokers.js'
import { median, percentile, type BrokerName, type ScenarioName, type Task } from './common.js'
import { loadHttp } from './http-load.js'
import { printReport, type Measure } from './report.js'
import { startChild } from './spawn.js'

const USAGE = `npm run bench [-- options]

  --quick               1 round, small counts (default: 3 rounds, full counts)
  --broker LIST         comma separated: kafka,rabbitmq,redis,memory (default: all four)
  --scenario LIST       comma separated: publish,e2e,latency,http (default: all four)
  --rounds N            interleaved rounds (default: 3, or 1 with --quick)
  --contender LIST      comma separated, only these contenders (default: all):
                          herald, herald-otel, herald-sdk, herald-untraced   Herald (publish, e2e; herald: latency too)
                          herald-otel-sampled  herald-otel with a ParentBased(TraceIdRatioBased(0.1)) sampler (publish, e2e)
                          herald-batch         Herald with a batchHandler at its defaults (e2e)
                          raw, raw-bare        hand-written loop on the broker's client (kafkajs, amqplib, ioredis);
                                               raw-bare sends the order without Herald's envelope (publish only)
                          raw-otel             raw with the OTel SDK of herald-otel and the client's official
                                               instrumentation (kafkajs, amqplib, ioredis); publish, e2e
                          raw-platformatic     raw on @platformatic/kafka instead of kafkajs: Kafka only (skipped
                                               on the other brokers); publish, e2e, latency
                          moleculer, nest      peers (e2e)
                          fastify:bare, fastify:event, fastify:naive, express:… (http)
  --help                this text

Needs the brokers on loopback (Kafka 127.0.0.1:9092, RabbitMQ 127.0.0.1:5672, Redis 127.0.0.1:6379).
Prints a markdown table of ratios of medians; exits 1 when a measure lost a message or failed.`

const args = process.argv.slice(2)
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE)
  process.exit(0)
}
/** A mistyped option or name would silently run everything for most of an hour: refuse it. */
function usageError (what: string): never {
  console.error(`bench: ${what}\n\n${USAGE}`)
  process.exit(2)
}
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--quick') continue
  if (!['--broker', '--scenario', '--rounds', '--contender'].includes(args[i]!)) usageError(`unknown option ${args[i]}`)
  if (args[++i] === undefined) usageError(`${args[i - 1]} needs a value`)
}
const option = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined }
const quick = args.includes('--quick')
const brokers = (option('--broker') ?? 'kafka,rabbitmq,redis,memory').split(',') as BrokerName[]
const scenarios = (option('--scenario') ?? 'publish,e2e,latency,http').split(',') as ScenarioName[]
const rounds = Number(option('--rounds') ?? (quick ? 1 : 3))
const contenders = option('--contender')?.split(',')
const CONTENDERS = ['herald', 'herald-batch', 'herald-otel', 'herald-otel-sampled', 'herald-sdk', 'herald-untraced', 'raw', 'raw-bare', 'raw-otel', 'raw-platformatic', 'moleculer', 'nest', ...['fastify', 'express'].flatMap(f => ['bare', 'event', 'naive'].map(r => `${f}:${r}`))]
for (const c of contenders ?? []) if (!CONTENDERS.includes(c)) usageError(`unknown contender ${c}`)
for (const b of brokers) if (!['kafka', 'rabbitmq', 'redis', 'memory'].includes(b)) usageError(`unknown broker ${b}`)
for (const sc of scenarios) if (!['publish', 'e2e', 'latency', 'http'].includes(sc)) usageError(`unknown scenario ${sc}`)
if (!Number.isInteger(rounds) || rounds < 1) usageError('--rounds must be a whole number of at least 1')
const size = quick
  ? { publish1: 200, publish100: 2000, e2e: 2000, latency: 1000, http: 3000 }
  : { publish1: 1000, publish100: 30_000, e2e: 20_000, latency: 3000, http: 20_000 }
/** The embedded broker keeps 10 000 entries per topic by default; the HTTP check reads them back. */
const MEMORY_HTTP_MAX = 10_000
const RATE = 500

const runId = randomBytes(3).toString('hex')
let seq = 0
const fresh = (what: string): string => `bench-${runId}-${what}-${++seq}`
const measures: Measure[] = []
const failures: string[] = []

/** What the run created, deleted at its end in one go per broker (deleting Kafka topics one by one costs seconds each). */
const created = new Map<BrokerName, { topics: string[], queues: string[], exchanges: string[] }>()
function forget (broker: BrokerName, topics: string[], queues: string[] = [], exchanges: string[] = []): void {
  const c = created.get(broker) ?? { topics: [], queues: [], exchanges: [] }
  c.topics.push(...topics)
  c.queues.push(...queues)
  c.exchanges.push(...exchanges)
  created.set(broker, c)
}
async function cleanupAll (): Promise<void> {
  for (const [broker, c] of created) await cleanup(broker, c.topics, c.queues, c.exchanges).catch((err: unknown) => { process.stderr.write(`cleanup ${broker}: ${(err as Error).message}\n`) })
  created.clear()
}
process.once('SIGINT', () => { void cleanupAll().finally(() => process.exit(130)) })

function rotate<T> (list: T[], by: number): T[] {
  return list.map((_, i) => list[(i + by) % list.length]!)
}

function record (m: Measure): void {
  measures.push(m)
  // Progress on stderr, so a long run shows its figures before the table.
  process.stderr.write(`  ${m.scenario} ${m.broker} ${m.contender}: ${m.value.toFixed(m.scenario.startsWith('latency') ? 2 : 0)} (lost ${m.lost}, dup ${m.duplicates}, failed ${m.failed})\n`)
  if (m.lost > 0) failures.push(`${m.scenario} ${m.broker} ${m.contender}: ${m.lost} acknowledged message(s) missing at the destination`)
}

async function publishScenario (broker: BrokerName, contender: string): Promise<void> {
  const topic = fresh('pub')
  await prepare(broker, topic)
  try {
    const task: Task = { contender, broker, role: 'publish', topic, group: 'none', n: 0, levels: [{ inFlight: 1, n: size.publish1 }, { inFlight: 100, n: size.publish100 }] }
    const out = await startChild(task).result as { levels: Array<{ inFlight: number, n: number, acked: number, failed: number, ms: number, cpuUs: number }>, sent: number }
    const acked = 1 + out.levels.reduce((s, l) => s + l.acked, 0)
    const held = await count(broker, topic)
    for (const l of out.levels) {
      record({ scenario: `publish${l.inFlight}`, broker, contender, value: l.acked / (l.ms / 1000), lost: Math.max(0, acked - held), duplicates: Math.max(0, held - acked), failed: l.failed })
      measures.push({ scenario: `cpu-publish${l.inFlight}`, broker, contender, value: l.cpuUs, lost: 0, duplicates: 0, failed: 0 })
    }
  } finally {
    forget(broker, [topic], [countQueueOf(topic)])
  }
}

async function e2eScenario (broker: BrokerName, contender: string): Promise<void> {
  const topic = fresh('e2e')
  // A group of its own: a member of an earlier step still leaving a shared group would hold partitions of this one.
  const group = `bench-${topic}`
  await prepare(broker, topic)
  try {
    const base: Task = { contender, broker, role: 'consume', topic, group, n: size.e2e }
    const consumer = startChild(base)
    await consumer.ready
    const producer = startChild({ ...base, role: 'produce' })
    const sent = await producer.result as { acked: number, failed: number, start: number }
    const seen = await consumer.result as { unique: number, duplicates: number, lost: number, last: number, cpuUs: number }
    const seconds = (seen.last - sent.start) / 1000
    record({ scenario: 'e2e', broker, contender, value: seen.unique / seconds, lost: Math.max(0, sent.acked - seen.unique), duplicates: seen.duplicates, failed: sent.failed })
    measures.push({ scenario: 'cpu-consume', broker, contender, value: seen.cpuUs, lost: 0, duplicates: 0, failed: 0 })
  } finally {
    forget(broker, [topic], [countQueueOf(topic), `${topic}.${group}`, `${topic}.${group}.dlq`, `${group}.${topic}`, topic], [topic])
  }
}

async function latencyScenario (broker: BrokerName, contender: string): Promise<void> {
  const topic = fresh('lat')
  const group = `bench-${topic}`
  await prepare(broker, topic)
  try {
    const out = await startChild({ contender, broker, role: 'latency', topic, group, n: size.latency, rate: RATE, warmup: Math.floor(size.latency / 10) }).result as { acked: number, failed: number, unique: number, duplicates: number, latencies: number[] }
    const common = { broker, contender, lost: Math.max(0, out.acked - out.unique), duplicates: out.duplicates, failed: out.failed }
    record({ scenario: 'latency50', value: percentile(out.latencies, 50), ...common })
    record({ scenario: 'latency99', value: percentile(out.latencies, 99), ...common })
  } finally {
    forget(broker, [topic], [countQueueOf(topic), `${topic}.${group}`, `${topic}.${group}.dlq`])
  }
}

async function httpScenario (broker: BrokerName, framework: 'fastify' | 'express', route: 'bare' | 'event' | 'naive'): Promise<void> {
  const topic = fresh('http')
  if (route !== 'bare') await prepare(broker, topic)
  const amount = broker === 'memory' ? Math.min(size.http, MEMORY_HTTP_MAX) : size.http
  const server = startChild({ contender: `${framework}:${route}`, broker, role: 'serve', topic, group: 'bench', n: amount, framework, route })
  try {
    const { port } = await server.ready as { port: number }
    const load = await loadHttp(port, amount)
    const expected = route === 'bare' ? 0 : load.ok
    // The embedded broker lives in the server process: it counts its own topic when asked.
    const held = route === 'bare'
      ? 0
      : broker === 'memory'
        ? (await (await fetch(`http://127.0.0.1:${port}/bench/count?expect=${expected}`)).json() as { count: number }).count
        : await count(broker, topic)
    // A request that timed out or failed may still have published its event: such events are
    // not duplicates; lost means a 2xx whose event is not there.
    record({ scenario: `http-${framework}-${route}`, broker, contender: framework, value: load.rps, lost: Math.max(0, expected - held), duplicates: Math.max(0, held - expected - load.errors), failed: load.non2xx + load.errors })
  } finally {
    server.process.kill('SIGTERM')
    await server.result.catch(() => {})
    if (route !== 'bare') forget(broker, [topic], [countQueueOf(topic)])
  }
}

interface Step { scenario: ScenarioName, broker: BrokerName, label: string, run: () => Promise<void> }

function steps (broker: BrokerName): Step[] {
  const out: Step[] = []
  const real = broker !== 'memory'
  const add = (scenario: ScenarioName, label: string, run: () => Promise<void>): void => {
    if (scenarios.includes(scenario) && (contenders === undefined || contenders.includes(label))) out.push({ scenario, broker, label, run })
  }
  if (real) {
    // A second raw Kafka client, to tell kafkajs's cost from Herald's: Kafka only.
    const second = broker === 'kafka' ? ['raw-platformatic'] : []
    for (const c of ['herald', 'herald-otel', 'herald-otel-sampled', 'herald-sdk', 'herald-untraced', 'raw', 'raw-bare', 'raw-otel', ...second]) add('publish', c, async () => await publishScenario(broker, c))
    for (const c of ['herald', 'herald-batch', 'herald-otel', 'herald-otel-sampled', 'herald-sdk', 'herald-untraced', 'raw', 'raw-otel', ...second, 'moleculer', 'nest']) add('e2e', c, async () => await e2eScenario(broker, c))
    for (const c of ['herald', 'raw', ...second]) add('latency', c, async () => await latencyScenario(broker, c))
  }
  for (const framework of ['fastify', 'express'] as const) {
    for (const route of real ? ['bare', 'event', 'naive'] as const : ['bare', 'event'] as const) {
      add('http', `${framework}:${route}`, async () => await httpScenario(broker, framework, route))
    }
  }
  return out
}

const started = Date.now()
for (let round = 0; round < rounds; round++) {
  for (const scenario of scenarios) {
    for (const broker of brokers) {
      const list = steps(broker).filter(s => s.scenario === scenario)
      for (const step of rotate(list, round)) {
        const t = Date.now()
        try {
          await step.run()
          process.stderr.write(`round ${round + 1}/${rounds} ${scenario} ${broker} ${step.label}: ${((Date.now() - t) / 1000).toFixed(1)} s\n`)
        } catch (err) {
          failures.push(`${scenario} ${broker} ${step.label}: ${(err as Error).message.split('\n').slice(0, 6).join(' | ')}`)
          process.stderr.write(`round ${round + 1}/${rounds} ${scenario} ${broker} ${step.label}: FAILED\n`)
        }
      }
    }
  }
}

await cleanupAll()
await printReport(measures, { rounds, quick, sizes: size, rate: RATE, seconds: (Date.now() - started) / 1000, median })
if (failures.length > 0) {
  console.log('\n**Failures**\n')
  for (const f of failures) console.log(`- ${f}`)
  process.exitCode = 1
}
