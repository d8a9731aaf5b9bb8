// What the runner and its child processes agree on: the task a child runs (one JSON
// environment variable), the line a child answers with, the message every contender sends,
// and small helpers for sending at a fixed number in flight or at a fixed rate.
import { randomUUID } from 'node:crypto'

export type BrokerName = 'kafka' | 'rabbitmq' | 'redis' | 'memory'
export type ScenarioName = 'publish' | 'e2e' | 'latency' | 'http'

/** Loopback only: the brokers every contender uses. */
export const KAFKA_BROKERS = ['127.0.0.1:9092']
export const RABBITMQ_URL = 'amqp://guest:guest@127.0.0.1:5672'
export const REDIS_URL = 'redis://127.0.0.1:6379'
/** Herald's RabbitMQ exchange (its default); the raw contenders publish to it too, so the bytes and routes match. */
export const HERALD_EXCHANGE = 'herald'
export const EVENT_NAME = 'order.placed'
export const SOURCE = 'bench'

/** The environment variable that carries a child's task, and the prefixes of the lines it prints. */
export const TASK_ENV = 'HERALD_BENCH_TASK'
export const RESULT_PREFIX = 'BENCH_RESULT '
export const READY_PREFIX = 'BENCH_READY '

export interface Task {
  contender: string
  broker: BrokerName
  /** What the child does: `publish`, `consume` / `produce` (end to end, two processes), `latency`, `serve` (HTTP). */
  role: 'publish' | 'consume' | 'produce' | 'latency' | 'serve'
  topic: string
  group: string
  /** Messages to send or to wait for. */
  n: number
  /** Publish scenario: the in-flight levels to measure, in order, each with its number of messages. */
  levels?: Array<{ inFlight: number, n: number }>
  /** Latency scenario: messages per second, and how many of the first to leave out (warm-up). */
  rate?: number
  warmup?: number
  /** HTTP: framework and route. */
  framework?: 'fastify' | 'express'
  route?: 'bare' | 'event' | 'naive'
}

export function readTask (): Task {
  const raw = process.env[TASK_ENV]
  if (raw === undefined) throw new Error(`${TASK_ENV} is not set: this file is started by bench/run.ts`)
  return JSON.parse(raw) as Task
}

export function answer (result: unknown): void {
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n')
}

export function ready (info: unknown = {}): void {
  process.stdout.write(READY_PREFIX + JSON.stringify(info) + '\n')
}

/** The ~300-byte order every contender sends; `n` identifies it, `sentAt` (ms, sub-ms precision) is for latency. */
export interface Order {
  n: number
  sentAt: number
  id: string
  customer: string
  items: Array<{ sku: string, qty: number, price: number }>
  currency: string
  total: number
  note: string
}

export function order (n: number): Order {
  return {
    n,
    sentAt: now(),
    id: `ord-${String(n).padStart(8, '0')}`,
    customer: `customer-${n % 997}@example.com`,
    items: [{ sku: 'SKU-10042', qty: 2, price: 19.99 }, { sku: 'SKU-20077', qty: 1, price: 249.5 }],
    currency: 'EUR',
    total: 289.48,
    note: 'leave at the front desk; call before delivery; fragile items inside'
  }
}

/** The key of message `n`: 64 keys, so Kafka spreads them over the partitions and per-key order has work to do. */
export function keyOf (n: number): string {
  return `k${n % 64}`
}

/** A Herald envelope and its headers, built by hand: what a raw producer sends to match Herald's bytes. */
export function envelope (data: unknown): { body: Buffer, headers: Record<string, string> } {
  const id = randomUUID()
  const body = Buffer.from(JSON.stringify({ id, name: EVENT_NAME, data, timestamp: new Date().toISOString(), source: SOURCE }))
  return { body, headers: { 'content-type': 'application/json', 'event-name': EVENT_NAME, 'event-id': id, 'event-source': SOURCE } }
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes on one machine. */
export function now (): number {
  return performance.timeOrigin + performance.now()
}

/** Measures each publish level in turn, after one warm-up send (connecting is not measured); message numbers never repeat. */
export async function publishLevels (levels: Array<{ inFlight: number, n: number }>, send: (i: number) => Promise<unknown>): Promise<{ levels: unknown[], sent: number }> {
  await send(0)
  let base = 1
  const out = []
  for (const level of levels) {
    const from = base
    out.push({ inFlight: level.inFlight, n: level.n, ...await sendAll(level.n, level.inFlight, async i => await send(from + i)) })
    base += level.n
  }
  return { levels: out, sent: base }
}

/**
 * The producer of the end-to-end scenario: message 0 connects (not timed), then the rest at
 * 100 in flight; `start` is when the timed part began (wall clock, comparable with a consumer's).
 */
export async function produce (n: number, send: (i: number) => Promise<unknown>): Promise<{ acked: number, failed: number, start: number }> {
  await send(0)
  const start = now()
  const out = await sendAll(n - 1, 100, async i => await send(i + 1))
  return { ...out, acked: out.acked + 1, start }
}

/** Sends `n` messages with `inFlight` at once at most; resolves with how many were acknowledged and the time taken. */
export async function sendAll (n: number, inFlight: number, send: (i: number) => Promise<unknown>): Promise<{ acked: number, failed: number, ms: number, cpuUs: number, firstError?: string }> {
  const cpu = process.cpuUsage()
  let next = 0
  let acked = 0
  let failed = 0
  let firstError: string | undefined
  const start = now()
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      try {
        await send(i)
        acked++
      } catch (err) {
        failed++
        firstError ??= (err as Error).message
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, lane))
  return { acked, failed, ms: now() - start, cpuUs: cpuPerMessage(cpu, n), ...(firstError === undefined ? {} : { firstError }) }
}

/**
 * This process's CPU time (user + system) since `start`, in µs per message: unlike a
 * throughput, it hardly moves when other processes load the machine.
 */
export function cpuPerMessage (start: NodeJS.CpuUsage, n: number): number {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / Math.max(1, n)
}

/** Sends `n` messages at `rate` per second (open loop: a slow acknowledgement does not slow the rate). */
export async function sendAtRate (n: number, rate: number, send: (i: number) => Promise<unknown>): Promise<{ acked: number, failed: number }> {
  const start = now()
  const interval = 1000 / rate
  let acked = 0
  let failed = 0
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    const wait = start + i * interval - now()
    if (wait > 1) await new Promise(resolve => setTimeout(resolve, wait))
    pending.push(send(i).then(() => { acked++ }, () => { failed++ }))
  }
  await Promise.all(pending)
  return { acked, failed }
}

/** What a consumer saw: distinct messages, deliveries (more than distinct: duplicates), first and last handled times. */
export class Tally {
  readonly #seen: Uint8Array
  unique = 0
  total = 0
  first = 0
  last = 0
  readonly latencies: number[] = []
  /** CPU usage when the first message came. */
  #cpu: NodeJS.CpuUsage | undefined
  #done: () => void = () => {}
  readonly done: Promise<void>

  constructor (readonly expected: number) {
    this.#seen = new Uint8Array(expected)
    this.done = new Promise(resolve => { this.#done = resolve })
  }

  /** Records one handled message (its order's `n` and `sentAt`). */
  record (data: unknown): void {
    const o = data as Partial<Order> | null
    const t = now()
    if (this.total === 0) {
      this.first = t
      this.#cpu = process.cpuUsage()
    }
    this.total++
    this.last = t
    if (o === null || typeof o.n !== 'number' || o.n < 0 || o.n >= this.expected) return
    if (typeof o.sentAt === 'number') this.latencies.push(t - o.sentAt)
    if (this.#seen[o.n] === 0) {
      this.#seen[o.n] = 1
      this.unique++
      if (this.unique === this.expected) this.#done()
    }
  }

  /**
   * Waits until every message came, or until nothing new came for `idleMs` (then some are
   * lost). The first message may take longer: the producer process is still starting.
   */
  async settle (idleMs = 15_000, firstMs = 60_000): Promise<void> {
    let seen = -1
    while (this.unique < this.expected && seen !== this.total) {
      seen = this.total
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.done, new Promise(resolve => { timer = setTimeout(resolve, seen === 0 ? firstMs : idleMs) })])
      clearTimeout(timer)
    }
  }

  /** `cpuUs`: this process's CPU time from the first message on, per message handled. */
  summary (): { unique: number, duplicates: number, lost: number, first: number, last: number, cpuUs: number } {
    const cpuUs = this.#cpu === undefined ? Number.NaN : cpuPerMessage(this.#cpu, this.total)
    return { unique: this.unique, duplicates: this.total - this.unique, lost: this.expected - this.unique, first: this.first, last: this.last, cpuUs }
  }
}

/** The p-th percentile (0..100) of numbers, nearest rank. */
export function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export function median (values: number[]): number {
  return percentile(values, 50)
}
