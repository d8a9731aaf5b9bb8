// What a RabbitMQ message's properties and headers cost, with raw amqplib (the repo's) and
// no Herald: persistent messages published at 100 in flight on a confirm channel, each kind
// in its own fresh queue, rounds interleaved; prints the publish rate, the client's CPU time
// per message and RabbitMQ's (beam.smp's, read from /proc: Linux, broker on this machine).
//   npx tsx bench/rabbitmq-message-cost.ts        (ROUNDS=5 N=15000 to change the counts)
// Kinds: `herald` — the bench's raw loop (contenders/rabbitmq-raw.ts) sending Herald's bytes
// (properties contentType, messageId, timestamp, appId; the event's headers and the key;
// mandatory, through the topic exchange); `bare` — what NestJS's RMQ client sends (persistent,
// no properties, empty headers, straight to the queue). Both send the same body, built once.
import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import amqplib from './amqplib.js'
import { envelope, HERALD_EXCHANGE, order, RABBITMQ_URL } from './common.js'
import { rabbitmqRaw } from './contenders/rabbitmq-raw.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const N = Number(process.env.N ?? 15_000)
const KINDS = ['herald', 'bare'] as const
const { body, headers } = envelope(order(0))

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
  const raw = rabbitmqRaw()
  const bare = async (): Promise<void> => await new Promise<void>((resolve, reject) => {
    ch.sendToQueue(queue, body, { persistent: true, headers: {} }, (err: unknown) => { if (err === null || err === undefined) resolve(); else reject(err) })
  })
  const send = kind === 'bare' ? bare : async (i: number): Promise<void> => await raw.send(queue, `k${i % 100}`, body, headers)
  await send(0)
  let next = 1
  const lane = async (): Promise<void> => { while (next < N) await send(next++) }
  const broker0 = brokerCpuUs()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 100 }, lane))
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const timed = N - 1
  const brokerUs = (brokerCpuUs() - broker0) / timed
  await ch.deleteQueue(queue)
  await raw.close()
  await connection.close()
  return { rate: timed / ms * 1000, clientUs: (cpu.user + cpu.system) / timed, brokerUs }
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
