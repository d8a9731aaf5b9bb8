// What a RabbitMQ message's properties and headers cost, with raw amqplib (the repo's) and
// no Herald: persistent messages published at 100 in flight on a confirm channel, each kind
// in its own fresh queue, rounds interleaved; prints the publish rate, the client's CPU time
// per message and RabbitMQ's (beam.smp's, read from /proc: Linux, broker on this machine).
//   npx tsx bench/rabbitmq-message-cost.ts        (ROUNDS=5 N=15000 to change the counts)
// Kinds: `herald` — the bytes Herald and the bench's raw loop send (properties contentType,
// messageId, timestamp, appId; headers content-type, event-name, event-id, event-source,
// herald-key; mandatory, through the topic exchange); `bare` — what NestJS's RMQ client sends
// (persistent, no properties, empty headers, straight to the queue).
import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import amqplib from './amqplib.js'
import { EVENT_NAME, HERALD_EXCHANGE, RABBITMQ_URL, SOURCE } from './common.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const N = Number(process.env.N ?? 15_000)
const KINDS = ['herald', 'bare'] as const
const body = Buffer.from(JSON.stringify({ id: randomUUID(), name: EVENT_NAME, data: { orderId: 1, items: [{ sku: 'sku-1', qty: 2, price: 19.99 }], customer: 'c-1', note: 'x'.repeat(120) }, timestamp: new Date().toISOString(), source: SOURCE }))

/** beam.smp's user + system CPU time in µs, or NaN when it is not a process of this machine. */
function brokerCpuUs (): number {
  for (const pid of readdirSync('/proc').filter(d => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      if (!stat.includes('(beam.smp)')) continue
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return (Number(fields[11]) + Number(fields[12])) * 1e6 / 100
    } catch { /* gone meanwhile */ }
  }
  return Number.NaN
}

async function measure (kind: typeof KINDS[number]): Promise<{ rate: number, clientUs: number, brokerUs: number }> {
  const connection = await amqplib.connect(RABBITMQ_URL)
  const ch = await connection.createConfirmChannel()
  const queue = `bench-cost-${randomUUID()}`
  await ch.assertExchange(HERALD_EXCHANGE, 'topic', { durable: true })
  await ch.assertQueue(queue, { durable: true })
  await ch.bindQueue(queue, HERALD_EXCHANGE, queue)
  let next = 0
  const send = async (i: number): Promise<void> => await new Promise<void>((resolve, reject) => {
    const done = (err: unknown): void => { if (err === null || err === undefined) resolve(); else reject(err) }
    if (kind === 'bare') { ch.sendToQueue(queue, body, { persistent: true, headers: {} }, done); return }
    const id = randomUUID()
    ch.publish(HERALD_EXCHANGE, queue, body, {
      persistent: true, mandatory: true, contentType: 'application/json', messageId: id, timestamp: Math.floor(Date.now() / 1000), appId: SOURCE,
      headers: { 'content-type': 'application/json', 'event-name': EVENT_NAME, 'event-id': id, 'event-source': SOURCE, 'herald-key': `k${i % 100}` }
    }, done)
  })
  const lane = async (): Promise<void> => { while (next < N) await send(next++) }
  const broker0 = brokerCpuUs()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 100 }, lane))
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const brokerUs = (brokerCpuUs() - broker0) / N
  await ch.deleteQueue(queue)
  await connection.close()
  return { rate: N / ms * 1000, clientUs: (cpu.user + cpu.system) / N, brokerUs }
}

const median = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
const seen: Record<string, Array<{ rate: number, clientUs: number, brokerUs: number }>> = { herald: [], bare: [] }
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of round % 2 === 0 ? KINDS : [...KINDS].reverse()) seen[kind]!.push(await measure(kind))
}
console.log(`| ${N} persistent messages, 100 in flight, median of ${ROUNDS} | publish rate (msg/s) | client CPU per message | RabbitMQ CPU per message |`)
console.log('|---|---|---|---|')
for (const kind of KINDS) {
  const m = seen[kind]!
  console.log(`| ${kind} | ${median(m.map(x => x.rate)).toFixed(0)} | ${median(m.map(x => x.clientUs)).toFixed(1)} µs | ${median(m.map(x => x.brokerUs)).toFixed(0)} µs |`)
}
