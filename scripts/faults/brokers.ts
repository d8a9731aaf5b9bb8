// The brokers under test, one private instance each, on loopback only, so that restarting
// one disturbs nobody else's service or tests:
// - Redis: a redis-server of our own on a free port, append-only with fsync on every write,
//   data in the run's temp dir; restarted with SIGTERM (graceful) or SIGKILL (crash).
// - Kafka: the project's own single-node broker (scripts/kafka.sh) with its data dir and
//   ports set to private ones; restarted with `kafka.sh stop` / `start`, or SIGKILL + start.
// - RabbitMQ: a private node (own node name, ports, Mnesia dir and config) started from the
//   installed rabbitmq-server; restarted with `rabbitmqctl stop_app` / `start_app`, or SIGKILL
//   of the node + a new boot on the same data.
// The worker reaches Redis and RabbitMQ through a loopback TCP proxy (cut = every socket
// reset, new ones refused for a while). Kafka advertises its own address, so clients would
// bypass a proxy after the first metadata call: there the worker's connection is cut by
// freezing the worker (SIGSTOP) for longer than its session timeout, then thawing it; the
// group drops it, and it has to notice, rejoin and carry on.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import amqplib from 'amqplib'
import { Redis } from 'ioredis'
import { Kafka, logLevel } from 'kafkajs'
import type { MessagingOptions } from '../../lib/index.js'
import { POISON_HEADER, type HarnessBroker, type PoisonMessage } from './common.js'
import { freePorts, onExit, runAsync, sleep, startChild, stopChild, waitForPort, type Child } from '../../test/support/processes.js'
import { startRedisServer } from '../../test/support/redis-server.js'
import { TcpProxy } from '../../test/support/tcp-proxy.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** A message read back from a dead-letter destination with a raw client. */
export interface RawDeadLetter {
  poison: string | undefined
  reason: string | undefined
  /** The first bytes of the body, for the report. */
  body: string
}

export type RestartKind = 'graceful' | 'crash'

export interface BrokerUnderTest {
  readonly kind: HarnessBroker
  /** What runs, for the report. */
  describe(): string
  start(): Promise<void>
  /** Where the service connects. */
  serviceConnection(): Pick<MessagingOptions, 'url' | 'bootstrapServers'>
  /** Where the worker connects (through the proxy, where there is one). */
  workerConnection(): Pick<MessagingOptions, 'url' | 'bootstrapServers'>
  /**
   * Takes the broker down (gracefully or by a crash), keeps it down `downMs`, runs
   * `whileDown` (another fault during the outage), brings it back. Resolves once it answers again.
   */
  restart(how: RestartKind, downMs: number, whileDown?: () => Promise<void>): Promise<string>
  /** Cuts the worker off for about `ms`. Resolves once the cut is over. */
  cutWorker(workerPid: number, ms: number): Promise<string>
  /** Sends the poison messages to `topic` with the broker's own client, not Herald. */
  sendPoison(topic: string, messages: PoisonMessage[]): Promise<void>
  /** Every message in the dead-letter destination `topic`, read with the raw client. */
  readDeadLetters(topic: string): Promise<RawDeadLetter[]>
  /** Stops the broker and removes its data. Idempotent. */
  stop(): Promise<void>
}

export function createBroker (kind: HarnessBroker, dir: string, runId: string): BrokerUnderTest {
  switch (kind) {
    case 'redis': return new PrivateRedis(path.join(dir, 'redis'))
    case 'kafka': return new PrivateKafka(path.join(dir, 'kafka'))
    case 'rabbitmq': return new PrivateRabbitMq(path.join(dir, 'rabbitmq'), runId)
  }
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/** The broker stays down `downMs`, then `whileDown` runs (still down). Returns how long it was down. */
async function outage (downMs: number, whileDown: (() => Promise<void>) | undefined): Promise<number> {
  const t0 = Date.now()
  await sleep(downMs)
  await whileDown?.()
  return Date.now() - t0
}

/** Cuts the worker's connections through the proxy, once it has some (it may still be reconnecting after a restart). */
async function cutThrough (proxy: TcpProxy | undefined, ms: number): Promise<string> {
  if (proxy === undefined) throw new Error('no proxy')
  const t0 = Date.now()
  while (proxy.connections === 0 && Date.now() - t0 < 20_000) await sleep(100)
  const waited = Date.now() - t0
  const n = proxy.cut(ms)
  await sleep(ms)
  return `TCP proxy reset ${n} worker connection(s)${waited > 200 ? ` (the worker had none for ${secs(waited)} before)` : ''} and refused new ones for ${secs(ms)}`
}

function preview (body: Buffer): string {
  const text = body.toString('utf8').slice(0, 40)
  return body.length === 0 ? '(empty)' : JSON.stringify(text)
}

// ---------------------------------------------------------------- Redis

class PrivateRedis implements BrokerUnderTest {
  readonly kind = 'redis' as const
  readonly #dir: string
  #port = 0
  #server: Child | undefined
  #proxy: TcpProxy | undefined
  #version = ''

  constructor (dir: string) {
    this.#dir = dir
  }

  describe (): string {
    return `private redis-server ${this.#version} on 127.0.0.1:${this.#port} (appendonly yes, appendfsync always); the worker through a TCP proxy on :${this.#proxy?.port ?? 0}`
  }

  async start (): Promise<void> {
    mkdirSync(this.#dir, { recursive: true })
    const [port] = await freePorts(1)
    this.#port = port!
    this.#version = (await runAsync('redis-server', ['--version'])).match(/v=(\S+)/)?.[1] ?? '?'
    await this.#boot()
    this.#proxy = new TcpProxy({ targetPort: this.#port })
    await this.#proxy.listen()
  }

  async #boot (): Promise<void> {
    this.#server = await startRedisServer(this.#port, this.#dir, path.join(this.#dir, '..', 'redis.log'))
  }

  serviceConnection (): Pick<MessagingOptions, 'url'> {
    return { url: `redis://127.0.0.1:${this.#port}` }
  }

  workerConnection (): Pick<MessagingOptions, 'url'> {
    return { url: `redis://127.0.0.1:${this.#proxy?.port ?? this.#port}` }
  }

  async restart (how: RestartKind, downMs: number, whileDown?: () => Promise<void>): Promise<string> {
    const server = this.#server
    if (server === undefined) throw new Error('redis-server is not running')
    // SIGTERM: Redis fsyncs its AOF and exits; SIGKILL: a crash (appendfsync always: every acknowledged write is on disk).
    const exit = await stopChild(server, how === 'graceful' ? 'SIGTERM' : 'SIGKILL', 15_000)
    const down = await outage(downMs, whileDown)
    await this.#boot()
    return `redis-server ${how === 'graceful' ? 'SIGTERM' : 'SIGKILL'} (exit ${exit}), down ${secs(down)}, restarted on its AOF`
  }

  async cutWorker (_workerPid: number, ms: number): Promise<string> {
    return await cutThrough(this.#proxy, ms)
  }

  async sendPoison (topic: string, messages: PoisonMessage[]): Promise<void> {
    const redis = new Redis(this.serviceConnection().url ?? '', { lazyConnect: true, maxRetriesPerRequest: 3 })
    await redis.connect()
    try {
      for (const [i, m] of messages.entries()) {
        await redis.xadd(topic, '*', 'data', m.value, 'key', `poison-${i}`, 'headers', JSON.stringify({ [POISON_HEADER]: m.name }))
      }
    } finally {
      redis.disconnect()
    }
  }

  async readDeadLetters (topic: string): Promise<RawDeadLetter[]> {
    const redis = new Redis(this.serviceConnection().url ?? '', { lazyConnect: true, maxRetriesPerRequest: 3 })
    await redis.connect()
    try {
      const entries = await redis.xrangeBuffer(topic, '-', '+')
      return entries.map(([, fields]) => {
        const map = new Map<string, Buffer>()
        for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!.toString(), fields[i + 1]!)
        let headers: Record<string, string> = {}
        try { headers = JSON.parse(map.get('headers')?.toString() ?? '{}') } catch {}
        return { poison: headers[POISON_HEADER], reason: headers['herald-dlq-reason'], body: preview(map.get('data') ?? Buffer.alloc(0)) }
      })
    } finally {
      redis.disconnect()
    }
  }

  async stop (): Promise<void> {
    await this.#proxy?.close()
    this.#proxy = undefined
    if (this.#server !== undefined) await stopChild(this.#server, 'SIGKILL', 5_000)
    this.#server = undefined
  }
}

// ---------------------------------------------------------------- Kafka

class PrivateKafka implements BrokerUnderTest {
  readonly kind = 'kafka' as const
  readonly #dir: string
  #port = 0
  #controllerPort = 0
  #started = false
  #lastPid: number | undefined
  #forget: (() => void) | undefined

  constructor (dir: string) {
    this.#dir = dir
  }

  describe (): string {
    const jar = kafkaJar()
    return `private single-node Kafka ${jar ?? ''} (scripts/kafka.sh, KRaft) on 127.0.0.1:${this.#port}, data in the run's temp dir; the worker's connection is cut by SIGSTOP (Kafka advertises its own address, so a proxy would be bypassed)`
  }

  #env (): NodeJS.ProcessEnv {
    return {
      ...process.env,
      HERALD_KAFKA_DATA: this.#dir,
      HERALD_KAFKA_PORT: String(this.#port),
      HERALD_KAFKA_CONTROLLER_PORT: String(this.#controllerPort),
      HERALD_KAFKA_START_TIMEOUT: '90'
    }
  }

  async #script (...args: string[]): Promise<string> {
    return await runAsync('bash', [path.join(ROOT, 'scripts/kafka.sh'), ...args], { env: this.#env(), timeoutMs: 150_000 })
  }

  /** The broker's pid, from kafka.sh's pid file (remembered, for the exit handler). */
  #pid (): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(this.#dir, 'kafka.pid'), 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0) this.#lastPid = pid
    } catch {}
    return this.#lastPid
  }

  async start (): Promise<void> {
    const [port, controllerPort] = await freePorts(2)
    this.#port = port!
    this.#controllerPort = controllerPort!
    // kafka.sh starts the broker in a session of its own (it outlives its caller): if the
    // harness dies, the exit handler kills it by the pid it wrote, and removes its data.
    this.#forget = onExit('kafka', () => {
      const pid = this.#pid()
      if (pid !== undefined) try { process.kill(pid, 'SIGKILL') } catch {}
      rmSync(this.#dir, { recursive: true, force: true })
    })
    this.#started = true
    await this.#script('start')
    this.#pid()
  }

  serviceConnection (): Pick<MessagingOptions, 'bootstrapServers'> {
    return { bootstrapServers: `127.0.0.1:${this.#port}` }
  }

  workerConnection (): Pick<MessagingOptions, 'bootstrapServers'> {
    return this.serviceConnection()
  }

  async restart (how: RestartKind, downMs: number, whileDown?: () => Promise<void>): Promise<string> {
    const stopping = Date.now()
    if (how === 'graceful') {
      await this.#script('stop')
    } else {
      const pid = this.#pid()
      if (pid === undefined) throw new Error('no Kafka pid to kill')
      process.kill(pid, 'SIGKILL')
      for (let i = 0; i < 200 && alive(pid); i++) await sleep(50)
    }
    const down0 = Date.now()
    const down = await outage(downMs, whileDown)
    const t0 = Date.now()
    await this.#script('start')
    this.#pid()
    return `Kafka ${how === 'graceful' ? `stopped in ${secs(down0 - stopping)} (kafka.sh stop: SIGTERM, controlled shutdown)` : 'SIGKILLed'}, down ${secs(down)} + ${secs(Date.now() - t0)} to start again`
  }

  async cutWorker (workerPid: number, ms: number): Promise<string> {
    process.kill(workerPid, 'SIGSTOP')
    try {
      await sleep(ms)
    } finally {
      process.kill(workerPid, 'SIGCONT')
    }
    return `worker frozen with SIGSTOP for ${(ms / 1000).toFixed(1)} s (session timeout 6 s: the group dropped it), then SIGCONT`
  }

  #client (): Kafka {
    return new Kafka({ brokers: [`127.0.0.1:${this.#port}`], clientId: 'faults-raw', logLevel: logLevel.NOTHING })
  }

  async sendPoison (topic: string, messages: PoisonMessage[]): Promise<void> {
    const producer = this.#client().producer({ allowAutoTopicCreation: false })
    await producer.connect()
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.map((m, i) => ({ key: `poison-${i}`, value: m.value, headers: { [POISON_HEADER]: m.name } }))
      })
    } finally {
      await producer.disconnect()
    }
  }

  async readDeadLetters (topic: string): Promise<RawDeadLetter[]> {
    const kafka = this.#client()
    const admin = kafka.admin()
    await admin.connect()
    let expected = 0
    try {
      const topics = await admin.listTopics()
      if (!topics.includes(topic)) return []
      for (const p of await admin.fetchTopicOffsets(topic)) expected += Number(p.high) - Number(p.low)
    } finally {
      await admin.disconnect()
    }
    if (expected === 0) return []
    const consumer = kafka.consumer({ groupId: `faults-audit-${Math.random().toString(16).slice(2)}`, sessionTimeout: 6_000, heartbeatInterval: 1_000, maxWaitTimeInMs: 200 })
    const out: RawDeadLetter[] = []
    await consumer.connect()
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      let done: () => void = () => {}
      const all = new Promise<void>(resolve => { done = resolve })
      await consumer.run({
        eachMessage: async ({ message }) => {
          const header = (name: string): string | undefined => {
            const v = message.headers?.[name]
            const one = Array.isArray(v) ? v[v.length - 1] : v
            return one === undefined ? undefined : one.toString()
          }
          out.push({ poison: header(POISON_HEADER), reason: header('herald-dlq-reason'), body: preview(message.value ?? Buffer.alloc(0)) })
          if (out.length >= expected) done()
        }
      })
      await Promise.race([all, sleep(30_000)])
    } finally {
      await consumer.disconnect()
    }
    return out
  }

  async stop (): Promise<void> {
    if (!this.#started) return
    this.#started = false
    try {
      await this.#script('stop', '--clean')
    } catch {
      const pid = this.#pid()
      if (pid !== undefined) try { process.kill(pid, 'SIGKILL') } catch {}
    }
    rmSync(this.#dir, { recursive: true, force: true })
    this.#forget?.()
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function kafkaJar (): string | undefined {
  try {
    const cache = process.env.HERALD_KAFKA_HOME ?? path.join(homedir(), '.cache/herald-kafka')
    for (const lib of readdirSync(cache).filter(d => d.startsWith('lib-'))) {
      const jar = readdirSync(path.join(cache, lib)).find(f => /^kafka_[\d.]+-[\d.]+\.jar$/.test(f))
      if (jar !== undefined) return jar.replace(/^kafka_[\d.]+-/, '').replace(/\.jar$/, '')
    }
  } catch {}
  return undefined
}

// ---------------------------------------------------------------- RabbitMQ

/** The installed server scripts, without the Debian wrapper that switches to the rabbitmq user. */
function rabbitBin (name: string): string {
  const direct = `/usr/lib/rabbitmq/bin/${name}`
  return existsSync(direct) ? direct : name
}

class PrivateRabbitMq implements BrokerUnderTest {
  readonly kind = 'rabbitmq' as const
  readonly #dir: string
  readonly #node: string
  #port = 0
  #distPort = 0
  #server: Child | undefined
  #proxy: TcpProxy | undefined
  #version = '?'
  #boots = 0

  constructor (dir: string, runId: string) {
    this.#dir = dir
    this.#node = `herald-faults-${runId}@localhost`
  }

  describe (): string {
    return `private RabbitMQ ${this.#version} node ${this.#node} on 127.0.0.1:${this.#port} (own Mnesia dir and config); the worker through a TCP proxy on :${this.#proxy?.port ?? 0}`
  }

  #env (): NodeJS.ProcessEnv {
    return {
      ...process.env,
      RABBITMQ_NODENAME: this.#node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.#port),
      RABBITMQ_DIST_PORT: String(this.#distPort),
      RABBITMQ_MNESIA_BASE: path.join(this.#dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(this.#dir, 'log'),
      RABBITMQ_CONFIG_FILE: path.join(this.#dir, 'rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: path.join(this.#dir, 'rabbitmq-env.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(this.#dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: path.join(this.#dir, 'rabbitmq.pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      // Erlang distribution (how rabbitmqctl talks to the node) on loopback only.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}'
    }
  }

  async start (): Promise<void> {
    mkdirSync(this.#dir, { recursive: true })
    const [port, distPort] = await freePorts(2)
    this.#port = port!
    this.#distPort = distPort!
    writeFileSync(path.join(this.#dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${this.#port}\nloopback_users = none\n`)
    writeFileSync(path.join(this.#dir, 'rabbitmq-env.conf'), '')
    writeFileSync(path.join(this.#dir, 'enabled_plugins'), '[].\n')
    await this.#boot()
    this.#proxy = new TcpProxy({ targetPort: this.#port })
    await this.#proxy.listen()
  }

  async #boot (): Promise<void> {
    this.#boots++
    this.#server = startChild('rabbitmq-server', rabbitBin('rabbitmq-server'), [], {
      logFile: path.join(this.#dir, `server-${this.#boots}.out`),
      env: this.#env(),
      group: true
    })
    await Promise.race([
      waitForPort(this.#port, 90_000, `RabbitMQ node ${this.#node}`),
      this.#server.exited.then(how => { throw new Error(`RabbitMQ node ${this.#node} exited (${how}) while starting; see ${this.#server?.logFile}`) })
    ])
  }

  async #ctl (...args: string[]): Promise<string> {
    return await runAsync(rabbitBin('rabbitmqctl'), ['-n', this.#node, ...args], { env: this.#env(), timeoutMs: 60_000 })
  }

  serviceConnection (): Pick<MessagingOptions, 'url'> {
    return { url: `amqp://guest:guest@127.0.0.1:${this.#port}` }
  }

  workerConnection (): Pick<MessagingOptions, 'url'> {
    return { url: `amqp://guest:guest@127.0.0.1:${this.#proxy?.port ?? this.#port}` }
  }

  async restart (how: RestartKind, downMs: number, whileDown?: () => Promise<void>): Promise<string> {
    if (how === 'graceful') {
      await this.#ctl('stop_app')
      const down = await outage(downMs, whileDown)
      await this.#ctl('start_app')
      await waitForPort(this.#port, 60_000, `RabbitMQ node ${this.#node}`)
      return `rabbitmqctl stop_app, down ${secs(down)}, start_app`
    }
    if (this.#server === undefined) throw new Error('the RabbitMQ node is not running')
    await stopChild(this.#server, 'SIGKILL', 5_000)
    const down = await outage(downMs, whileDown)
    const t0 = Date.now()
    await this.#boot()
    return `RabbitMQ node SIGKILLed, down ${secs(down)} + ${secs(Date.now() - t0)} to boot again on its data`
  }

  async cutWorker (_workerPid: number, ms: number): Promise<string> {
    return await cutThrough(this.#proxy, ms)
  }

  async sendPoison (topic: string, messages: PoisonMessage[]): Promise<void> {
    const connection = await amqplib.connect(this.serviceConnection().url ?? '')
    try {
      this.#version = String(connection.connection.serverProperties?.version ?? this.#version)
      const channel = await connection.createConfirmChannel()
      // Herald's topic exchange `herald`, the topic as routing key; the key travels as a `key` header.
      for (const [i, m] of messages.entries()) {
        channel.publish('herald', topic, m.value, { persistent: true, headers: { [POISON_HEADER]: m.name, key: `poison-${i}` } })
      }
      await channel.waitForConfirms()
      await channel.close()
    } finally {
      await connection.close()
    }
  }

  async readDeadLetters (topic: string): Promise<RawDeadLetter[]> {
    const connection = await amqplib.connect(this.serviceConnection().url ?? '')
    const out: RawDeadLetter[] = []
    try {
      const channel = await connection.createChannel()
      channel.on('error', () => {})
      try {
        await channel.checkQueue(topic)
      } catch {
        return []
      }
      // Read without settling, then close the channel: every message goes back to the queue.
      for (;;) {
        const message = await channel.get(topic, { noAck: false })
        if (message === false) break
        const headers = (message.properties.headers ?? {}) as Record<string, unknown>
        const str = (v: unknown): string | undefined => v === undefined ? undefined : Buffer.isBuffer(v) ? v.toString() : String(v)
        out.push({ poison: str(headers[POISON_HEADER]), reason: str(headers['herald-dlq-reason']), body: preview(message.content) })
      }
      await channel.close()
    } finally {
      await connection.close()
    }
    return out
  }

  async stop (): Promise<void> {
    await this.#proxy?.close()
    this.#proxy = undefined
    if (this.#server !== undefined) {
      try {
        await this.#ctl('stop')
      } catch {}
      await stopChild(this.#server, 'SIGTERM', 10_000)
      this.#server = undefined
    }
  }
}
