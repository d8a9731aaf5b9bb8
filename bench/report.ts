// The markdown the bench prints: ratios of medians (absolute figures in brackets), the
// verification of every measure, the machine and the versions of every client and peer.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import type { BrokerName } from './common.js'
import { CONNECTIONS } from './http-load.js'

export interface Measure {
  scenario: string
  broker: BrokerName
  contender: string
  /** msg/s, req/s, or ms for latency. */
  value: number
  lost: number
  duplicates: number
  failed: number
}

interface Context { rounds: number, quick: boolean, sizes: Record<string, number>, rate: number, seconds: number, median: (v: number[]) => number }

const BROKERS: BrokerName[] = ['kafka', 'rabbitmq', 'redis', 'memory']
const TITLES: Record<BrokerName, string> = { kafka: 'Kafka', rabbitmq: 'RabbitMQ', redis: 'Redis', memory: 'memory' }
const ROOT = fileURLToPath(new URL('..', import.meta.url))

const k = (v: number): string => !Number.isFinite(v) ? '?' : v >= 10_000 ? `${(v / 1000).toFixed(1)}k` : v >= 1000 ? `${(v / 1000).toFixed(2)}k` : v.toFixed(0)
const us = (v: number): string => `${v.toFixed(0)} µs`
const ms = (v: number): string => `${v.toFixed(v < 10 ? 2 : 1)} ms`

export async function printReport (measures: Measure[], ctx: Context): Promise<void> {
  const med = (scenario: string, broker: BrokerName, contender: string): number => {
    const values = measures.filter(m => m.scenario === scenario && m.broker === broker && m.contender === contender).map(m => m.value)
    return values.length === 0 ? Number.NaN : ctx.median(values)
  }
  const ratio = (a: number, b: number, fmt = k): string => Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}× (${fmt(a)} vs ${fmt(b)})` : '—'
  /** Several ratios in one cell; '—' when none was measured, so the row is left out. */
  const several = (...cells: string[]): string => cells.every(c => c === '—') ? '—' : cells.join(' / ')
  const rows: Array<[string, (b: BrokerName) => string]> = [
    ['publish, acknowledged, 1 in flight: Herald `publishEvent` ÷ raw producer, same bytes (msg/s)', b => ratio(med('publish1', b, 'herald'), med('publish1', b, 'raw'))],
    ['publish, acknowledged, 100 in flight: Herald ÷ raw coalesced producer, same bytes', b => ratio(med('publish100', b, 'herald'), med('publish100', b, 'raw'))],
    ['same, CPU time of the publishing process per message (µs; below 1× is cheaper; less sensitive to a loaded machine)', b => ratio(med('cpu-publish100', b, 'herald'), med('cpu-publish100', b, 'raw'), us)],
    ['what the envelope costs, 100 in flight: raw with envelope + headers ÷ raw bare message', b => ratio(med('publish100', b, 'raw'), med('publish100', b, 'raw-bare'))],
    ['end to end durable (publish at 100 in flight, one consumer process, ack after the handler): Herald ÷ raw loop (msg/s)', b => ratio(med('e2e', b, 'herald'), med('e2e', b, 'raw'))],
    ['same, Herald ÷ best peer', (b) => {
      const peers = (['moleculer', 'nest'] as const).map(p => ({ p, v: med('e2e', b, p) })).filter(x => Number.isFinite(x.v))
      if (peers.length === 0) return '—'
      const best = peers.reduce((a, x) => x.v > a.v ? x : a)
      return `${ratio(med('e2e', b, 'herald'), best.v)} ${best.p === 'nest' ? 'NestJS' : 'Moleculer'}`
    }],
    ['same, Herald `batchHandler` at its defaults (maxBatchSize 100, maxWaitMs 50) ÷ raw loop', b => ratio(med('e2e', b, 'herald-batch'), med('e2e', b, 'raw'))],
    ['same, Moleculer channels (msg/s)', b => { const v = med('e2e', b, 'moleculer'); return Number.isFinite(v) ? k(v) : '—' }],
    ['same, NestJS microservices (msg/s)', b => { const v = med('e2e', b, 'nest'); return Number.isFinite(v) ? k(v) + (b === 'redis' ? ' (pub/sub, not durable)' : '') : '—' }],
    ['end to end durable, CPU time of the consuming process per message: Herald ÷ raw loop (µs)', b => ratio(med('cpu-consume', b, 'herald'), med('cpu-consume', b, 'raw'), us)],
    ['observability on ÷ off, 100 in flight: Herald with an OTel SDK (spans through a BatchSpanProcessor, OTel metrics) and `herald/metrics` ÷ Herald without (msg/s)', b => ratio(med('publish100', b, 'herald-otel'), med('publish100', b, 'herald'))],
    ['same, end to end durable', b => ratio(med('e2e', b, 'herald-otel'), med('e2e', b, 'herald'))],
    ['same, CPU time of the publishing process per message, 100 in flight (µs; less sensitive to a loaded machine)', b => ratio(med('cpu-publish100', b, 'herald-otel'), med('cpu-publish100', b, 'herald'), us)],
    ['same, CPU time of the consuming process per message, end to end (µs)', b => ratio(med('cpu-consume', b, 'herald-otel'), med('cpu-consume', b, 'herald'), us)],
    ['Herald\'s own part: CPU per message published (100 in flight), observability on ÷ the same SDK registered with Herald\'s `tracing: false` and no `herald/metrics`', b => ratio(med('cpu-publish100', b, 'herald-otel'), med('cpu-publish100', b, 'herald-sdk'), us)],
    ['same, CPU per message consumed (end to end)', b => ratio(med('cpu-consume', b, 'herald-otel'), med('cpu-consume', b, 'herald-sdk'), us)],
    ['sampled as production services run it (ParentBased(TraceIdRatioBased(0.1)): 1 message in 10 recorded), CPU per message published ÷ Herald without', b => ratio(med('cpu-publish100', b, 'herald-otel-sampled'), med('cpu-publish100', b, 'herald'), us)],
    ['same, CPU per message consumed', b => ratio(med('cpu-consume', b, 'herald-otel-sampled'), med('cpu-consume', b, 'herald'), us)],
    ['tracing as users of the raw clients have it: the raw loop with the same SDK and its client\'s official OTel instrumentation (`raw-otel`; on Redis a span per command, none per message) ÷ the raw loop, CPU per message published (100 in flight) / consumed (end to end)', b => several(ratio(med('cpu-publish100', b, 'raw-otel'), med('cpu-publish100', b, 'raw'), us), ratio(med('cpu-consume', b, 'raw-otel'), med('cpu-consume', b, 'raw'), us))],
    ['both traced, Herald ÷ raw (`herald-otel` ÷ `raw-otel`): publish 100 in flight / end to end (msg/s; untraced: the rows above)', b => several(ratio(med('publish100', b, 'herald-otel'), med('publish100', b, 'raw-otel')), ratio(med('e2e', b, 'herald-otel'), med('e2e', b, 'raw-otel')))],
    ['no SDK registered (`@opentelemetry/api` installed): CPU per message published, Herald at its defaults ÷ Herald with `tracing: false` (1.00× within noise: nothing listens)', b => ratio(med('cpu-publish100', b, 'herald'), med('cpu-publish100', b, 'herald-untraced'), us)],
    ['same, CPU per message consumed', b => ratio(med('cpu-consume', b, 'herald'), med('cpu-consume', b, 'herald-untraced'), us)],
    [`publish→handle latency p50 at ${ctx.rate} msg/s: Herald ÷ raw loop`, b => ratio(med('latency50', b, 'herald'), med('latency50', b, 'raw'), ms)],
    ['same, p99', b => ratio(med('latency99', b, 'herald'), med('latency99', b, 'raw'), ms)],
    ['second raw Kafka client (@platformatic/kafka, same loop, same bytes), publish 1 in flight: Herald ÷ it', b => ratio(med('publish1', b, 'herald'), med('publish1', b, 'raw-platformatic'))],
    ['same, 100 in flight: Herald ÷ it', b => ratio(med('publish100', b, 'herald'), med('publish100', b, 'raw-platformatic'))],
    ['same, end to end durable: Herald ÷ it', b => ratio(med('e2e', b, 'herald'), med('e2e', b, 'raw-platformatic'))],
    ['same, latency p50 / p99: Herald ÷ it', b => several(ratio(med('latency50', b, 'herald'), med('latency50', b, 'raw-platformatic'), ms), ratio(med('latency99', b, 'herald'), med('latency99', b, 'raw-platformatic'), ms))],
    ['the clients alone, raw @platformatic/kafka ÷ raw kafkajs: publish 1 in flight / 100 in flight / end to end (msg/s)', b => several(ratio(med('publish1', b, 'raw-platformatic'), med('publish1', b, 'raw')), ratio(med('publish100', b, 'raw-platformatic'), med('publish100', b, 'raw')), ratio(med('e2e', b, 'raw-platformatic'), med('e2e', b, 'raw')))],
    ['same, latency p50 / p99 (ms; below 1× is faster)', b => several(ratio(med('latency50', b, 'raw-platformatic'), med('latency50', b, 'raw'), ms), ratio(med('latency99', b, 'raw-platformatic'), med('latency99', b, 'raw'), ms))],
    ['same, CPU time per message of the publishing process (100 in flight) / of the consuming process (end to end) (µs; below 1× is cheaper; less sensitive to a loaded machine)', b => several(ratio(med('cpu-publish100', b, 'raw-platformatic'), med('cpu-publish100', b, 'raw'), us), ratio(med('cpu-consume', b, 'raw-platformatic'), med('cpu-consume', b, 'raw'), us))],
    [`Fastify \`POST\` with \`config.event\` ÷ the same bare route (req/s, autocannon, ${CONNECTIONS} connections)`, b => ratio(med('http-fastify-event', b, 'fastify'), med('http-fastify-bare', b, 'fastify'))],
    ['same ÷ a naive route that awaits one raw send per request', b => ratio(med('http-fastify-event', b, 'fastify'), med('http-fastify-naive', b, 'fastify'))],
    ['Express `emit()` ÷ the same bare route', b => ratio(med('http-express-event', b, 'express'), med('http-express-bare', b, 'express'))],
    ['same ÷ a naive route that awaits one raw send per request', b => ratio(med('http-express-event', b, 'express'), med('http-express-naive', b, 'express'))]
  ]
  const present = BROKERS.filter(b => measures.some(m => m.broker === b))
  const out: string[] = []
  out.push(`| what | ${present.map(b => TITLES[b]).join(' | ')} |`, `|---|${present.map(() => '---').join('|')}|`)
  for (const [what, cell] of rows) {
    const cells = present.map(cell)
    if (cells.every(c => c === '—' || c === '?')) continue
    out.push(`| ${what} | ${cells.join(' | ')} |`)
  }
  out.push('', `Medians of ${ctx.rounds} interleaved round${ctx.rounds === 1 ? '' : 's'}${ctx.quick ? ' (--quick)' : ''}; messages: ${Object.entries(ctx.sizes).map(([n, v]) => `${n} ${v}`).join(', ')}; run took ${Math.round(ctx.seconds)} s.`)

  out.push('', '**Verification** (summed over rounds: acknowledged messages missing at the destination / duplicates / failed sends or non-2xx)', '')
  out.push(`| measure | contender | ${present.map(b => TITLES[b]).join(' | ')} |`, `|---|---|${present.map(() => '---').join('|')}|`)
  const keys = [...new Set(measures.map(m => `${m.scenario}\u0000${m.contender}`))]
  for (const key of keys) {
    const [scenario, contender] = key.split('\u0000') as [string, string]
    if (scenario === 'latency99' || scenario.startsWith('cpu-')) continue
    const cells = present.map((b) => {
      const ms = measures.filter(m => m.scenario === scenario && m.contender === contender && m.broker === b)
      if (ms.length === 0) return '—'
      const sum = (f: (m: Measure) => number): number => ms.reduce((s, m) => s + f(m), 0)
      return `${sum(m => m.lost) === 0 ? 'lost 0' : `**lost ${sum(m => m.lost)}**`} / dup ${sum(m => m.duplicates)} / failed ${sum(m => m.failed)}`
    })
    out.push(`| ${scenario.replace(/^latency50$/, 'latency')} | ${contender} | ${cells.join(' | ')} |`)
  }

  out.push('', machine())
  console.log(out.join('\n'))
}

function version (name: string): string {
  for (const dir of [`${ROOT}bench/node_modules/${name}`, `${ROOT}node_modules/${name}`]) {
    if (existsSync(`${dir}/package.json`)) return (JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')) as { version: string }).version
  }
  return 'not installed'
}

/** amqplib twice: Herald and the raw loops use the repo's, the peers the older one they support. */
function amqplibVersions (): string {
  const read = (dir: string): string => existsSync(`${dir}/package.json`) ? (JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')) as { version: string }).version : 'not installed'
  return `amqplib ${read(`${ROOT}node_modules/amqplib`)} (Herald, raw) and ${read(`${ROOT}bench/node_modules/amqplib`)} (peers)`
}

function machine (): string {
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    if (execFileSync('git', ['status', '--porcelain', '--', 'lib', 'plugins'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '') commit += ' + uncommitted changes in lib/ or plugins/'
  } catch {}
  const names = ['kafkajs', '@platformatic/kafka', 'ioredis', 'fastify', 'express', 'moleculer', '@moleculer/channels', '@nestjs/core', '@nestjs/microservices', 'amqp-connection-manager', 'autocannon', '@opentelemetry/api', '@opentelemetry/sdk-trace-base', '@opentelemetry/sdk-metrics', 'prom-client']
  return [
    `Machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load average ${os.loadavg().map(l => l.toFixed(1)).join(' ')} at the end, Node ${process.version}, ${os.platform()} ${os.release()}.`,
    `Herald at commit ${commit}. Versions: ${names.map(n => `${n} ${version(n)}`).join(', ')}, ${amqplibVersions()}.`
  ].join('\n')
}
