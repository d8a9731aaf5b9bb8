// Soak: steady HTTP load through a Fastify service (a route with `config.event`) and a
// worker (`startConsumers`) for a number of minutes; every minute each process prints its
// RSS, heap and event-loop delay, and at the end the growth after warm-up and whether every
// 2xx was handled.
//
//   npm run soak -- --minutes 10 --broker redis [--rate 300]
//
// The service and the worker are child processes of their own (on the memory broker one
// process holds both: the embedded broker lives in its process). Loopback only; the load
// loop is bounded by --minutes and stops by itself.
import { spawn, type ChildProcess } from 'node:child_process'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import herald from '../plugins/fastify.js'
import { createMessaging, messageHandler, startConsumers, type BrokerKind, type MessagingOptions } from '../lib/index.js'

interface Sample { role: string, minute: number, rssMb: number, heapMb: number, loopP99Ms: number, count: number }

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    broker: { type: 'string', default: 'memory' },
    rate: { type: 'string', default: '300' },
    role: { type: 'string' },
    topic: { type: 'string' },
    port: { type: 'string' }
  }
})
const broker = values.broker as BrokerKind
const minutes = Number(values.minutes)
const rate = Number(values.rate)
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS ?? 60_000)

function options (): MessagingOptions {
  const common = { broker, logger: false as const, source: 'soak' }
  switch (broker) {
    case 'kafka': return { ...common, bootstrapServers: process.env.KAFKA_BOOTSTRAP_SERVERS ?? '127.0.0.1:9092' }
    case 'rabbitmq': return { ...common, url: process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672' }
    case 'redis': return { ...common, url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }
    default: return common
  }
}

/** Prints one sample line a minute: what the parent reads. */
function sampleEvery (role: string, count: () => number): void {
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  let minute = 0
  setInterval(() => {
    const mem = process.memoryUsage()
    const sample: Sample = { role, minute: ++minute, rssMb: mem.rss / 2 ** 20, heapMb: mem.heapUsed / 2 ** 20, loopP99Ms: loop.percentile(99) / 1e6, count: count() }
    loop.reset()
    process.stdout.write(`SAMPLE ${JSON.stringify(sample)}\n`)
  }, SAMPLE_MS).unref()
}

async function service (topic: string, port: number): Promise<void> {
  const app = Fastify()
  await app.register(herald, options())
  let answered = 0
  app.post('/orders', { config: { event: { name: 'order.placed', topic, keyField: 'id' } } }, async (request, reply) => {
    answered++
    reply.code(201)
    return { id: answered, ...(request.body as object) }
  })
  await app.listen({ port, host: '127.0.0.1' })
  sampleEvery('service', () => answered)
  process.stdout.write('READY\n')
}

async function worker (topic: string, announce = true): Promise<void> {
  const messaging = createMessaging(options())
  let handled = 0
  await startConsumers({ messaging, handlers: [messageHandler({ topic, group: 'soak-worker' }, async () => { handled++ })] })
  sampleEvery('worker', () => handled)
  if (announce) process.stdout.write('READY\n')
}

function child (role: string, topic: string, port: number, onSample: (s: Sample) => void): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', role, '--broker', broker, '--topic', topic, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    proc.once('exit', code => reject(new Error(`${role} exited (${code}) before it was ready`)))
    createInterface({ input: proc.stdout! }).on('line', line => {
      if (line === 'READY') resolve(proc)
      else if (line.startsWith('SAMPLE ')) onSample(JSON.parse(line.slice(7)) as Sample)
    })
  })
}

async function load (port: number, until: number): Promise<{ ok: number, failed: number, why: Map<string, number> }> {
  let ok = 0
  let failed = 0
  const why = new Map<string, number>()
  const fail = (reason: string): void => { failed++; why.set(reason, (why.get(reason) ?? 0) + 1) }
  const every = 1000 / rate
  let next = Date.now()
  const inFlight = new Set<Promise<void>>()
  while (Date.now() < until) {
    const p = fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ total: 12.5, items: ['a', 'b'] }) })
      .then(async res => { await res.arrayBuffer(); if (res.status === 201) ok++; else fail(`HTTP ${res.status}`) }, (err: Error) => { fail(String((err.cause as Error | undefined)?.message ?? err.message)) })
      .finally(() => inFlight.delete(p))
    inFlight.add(p)
    next += every
    const wait = next - Date.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    if (inFlight.size > 500) await Promise.race(inFlight)
  }
  await Promise.allSettled(inFlight)
  return { ok, failed, why }
}

async function main (): Promise<void> {
  if (values.role === 'service') return await service(values.topic!, Number(values.port))
  if (values.role === 'worker') return await worker(values.topic!)
  if (values.role === 'both') {
    await worker(values.topic!, false)
    return await service(values.topic!, Number(values.port))
  }

  const topic = `soak-${Date.now()}`
  const port = 20_000 + Math.floor(Math.random() * 20_000)
  const samples: Sample[] = []
  const onSample = (s: Sample): void => {
    samples.push(s)
    console.log(`minute ${s.minute} ${s.role.padEnd(7)} rss ${s.rssMb.toFixed(1)} MB  heap ${s.heapMb.toFixed(1)} MB  event-loop p99 ${s.loopP99Ms.toFixed(1)} ms  count ${s.count}`)
  }
  const children = broker === 'memory'
    ? [await child('both', topic, port, onSample)]
    : [await child('worker', topic, port, onSample), await child('service', topic, port, onSample)]
  console.log(`soak: ${minutes} min on ${broker} at ${rate} req/s (node ${process.version})`)
  const result = await load(port, Date.now() + minutes * 60_000)
  // One more sample after the load, so the last minute is counted.
  await new Promise(resolve => setTimeout(resolve, SAMPLE_MS + 1000))
  for (const c of children) c.kill('SIGTERM')
  const verdict: string[] = []
  for (const role of broker === 'memory' ? ['both'] : ['service', 'worker']) {
    const own = samples.filter(s => s.role === role || (role === 'both' && (s.role === 'service' || s.role === 'worker')))
    const byRole = new Map<string, Sample[]>()
    for (const s of own) byRole.set(s.role, [...(byRole.get(s.role) ?? []), s])
    for (const [name, list] of byRole) {
      if (list.length < 3) continue
      const warm = list[1]!.rssMb
      const last = list.at(-1)!.rssMb
      verdict.push(`${name}: rss after warm-up ${warm.toFixed(1)} MB -> ${last.toFixed(1)} MB (${(((last - warm) / warm) * 100).toFixed(1)}%)`)
    }
  }
  const handled = samples.filter(s => s.role === 'worker').at(-1)?.count ?? 0
  console.log(`requests: ${result.ok} answered 201, ${result.failed} failed${result.why.size === 0 ? '' : ` (${[...result.why].map(([w, n]) => `${n}× ${w}`).join(', ')})`}; handled by the worker: ${handled}`)
  for (const line of verdict) console.log(line)
  process.exitCode = result.failed === 0 && handled >= result.ok ? 0 : 1
}

await main()
