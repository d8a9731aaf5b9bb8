import { BROKER_KINDS, type Broker, type BrokerDeps, type BrokerHealth, type BrokerKind } from './brokers/broker.js'
import { resolveKafkaSettings, type KafkaOptions } from './brokers/kafka/kafka-config.js'
import { resolveMemorySettings, type MemoryOptions } from './brokers/memory/memory-config.js'
import { resolveRabbitMqSettings, type RabbitMqOptions } from './brokers/rabbitmq/rabbitmq-config.js'
import { resolveRedisSettings, type RedisOptions } from './brokers/redis/redis-config.js'
import { checkKnownKeys, checkPositiveInt } from './brokers/config-checks.js'
import { BrokerError, ConfigError, HeraldError, isRetriable } from './errors.js'
import type { Event, EventData } from './event.js'
import { childLogger, createDefaultLogger, type Logger } from './logger.js'
import { resolveOutboxSettings, type OutboxOptions, type OutboxSettings } from './outbox/outbox-config.js'
import { Outbox, type OutboxStats } from './outbox/outbox.js'
import { Producer, type PublishOptions } from './producer.js'
import { liveMessaging } from './observability/registry.js'
import { redactText, redactUrl } from './redact.js'

/** Options of `createMessaging` / `configureMessaging`, the Fastify plugin and the Express middleware. */
export interface MessagingOptions {
  /** Which broker. Default: `MESSAGING_BROKER`, else the broker whose variable is set, else `memory`. */
  broker?: BrokerKind
  /** Kafka brokers, `host:port` (a string with commas, or an array). Default `KAFKA_BOOTSTRAP_SERVERS`, else `localhost:9092`. */
  bootstrapServers?: string | string[]
  /** RabbitMQ (`amqp://`, `amqps://`) or Redis (`redis://`, `rediss://`) URL. Default `RABBITMQ_URL` / `REDIS_URL`, else localhost. */
  url?: string
  /** The service name stamped on events as `source`, and the default consumer group. Default `SERVICE_NAME`, else `herald`. */
  source?: string
  /** Where events go when no topic is given. Default `events`. */
  defaultTopic?: string
  /** A pino-compatible logger; `false` for none. Default: one line per record on stderr from `HERALD_LOG_LEVEL` (default `warn`). */
  logger?: Logger | false
  /**
   * How long connecting to the broker may take, in ms, before `connect()`,
   * `startConsumers()`, the Fastify plugin's registration and the CLI fail with a
   * `BrokerError` (code `HERALD_CONNECT_TIMEOUT`) naming the broker and its address: a
   * broker that accepts the connection but never answers hangs nothing. Default 5000 (below
   * Fastify's 10 s plugin timeout). `health()` waits at most this, and 5 s at most.
   */
  connectTimeout?: number
  /** How long a publish waits for the broker's acknowledgement, in ms. Default 10000. */
  publishTimeout?: number
  /** How long the producer waits for more sends before sending a batch, in ms. Default 0 (what arrives in the same tick). */
  linger?: number
  /** The most messages the producer sends in one batch. Default 500. */
  maxBatchSize?: number
  /**
   * The largest message `send` and `publishEvent` take, in bytes (body, key and headers):
   * a bigger one fails at once, on every broker. Default 1048576 (1 MiB, Kafka's default limit).
   */
  maxMessageBytes?: number
  /**
   * A local durable spool for the sends the broker does not acknowledge within
   * `publishTimeout` (or fails with a retriable error): they resolve once written and
   * fsynced there, and are relayed in order when the broker answers (or on the next
   * start). Without it, such a send rejects (the route's 503). See the README, "Publishing
   * through outages".
   */
  outbox?: OutboxOptions
  /**
   * OpenTelemetry tracing when `@opentelemetry/api` is installed and an SDK is registered
   * (README, "Observability"). Default true; false: no spans, no trace context in headers.
   */
  tracing?: boolean
  kafka?: KafkaOptions
  rabbitmq?: RabbitMqOptions
  redis?: RedisOptions
  memory?: MemoryOptions
}

/** Options after defaults and validation. */
export interface ResolvedMessagingOptions {
  broker: BrokerKind
  source: string
  defaultTopic: string
  connectTimeout: number
  publishTimeout: number
  linger: number
  maxBatchSize: number
  maxMessageBytes: number
  outbox: OutboxSettings | undefined
  tracing: boolean
  /** Where the broker is, password masked: for logs and errors. */
  address: string
}

/** `health()`: the broker's health, and the outbox's state when there is one (also summed up in `detail`). */
export interface MessagingHealth extends BrokerHealth {
  outbox?: OutboxStats
}

type Connector = (deps: BrokerDeps) => Promise<Broker>

/** Every option `createMessaging` takes (the compiler checks that none is missing): any other key is a typo. */
const OPTION_KEYS: Record<keyof MessagingOptions, true> = {
  broker: true,
  bootstrapServers: true,
  url: true,
  source: true,
  defaultTopic: true,
  logger: true,
  connectTimeout: true,
  publishTimeout: true,
  linger: true,
  maxBatchSize: true,
  maxMessageBytes: true,
  outbox: true,
  tracing: true,
  kafka: true,
  rabbitmq: true,
  redis: true,
  memory: true
}

/** The names of the messaging options, for the integrations that take them beside their own. */
export const MESSAGING_OPTION_KEYS: readonly string[] = Object.keys(OPTION_KEYS)

/** `connectTimeout` when not given, in ms: below Fastify's 10 s plugin timeout. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000

/** The most `health()` waits for an answer, in ms. */
const HEALTH_TIMEOUT_MS = 5_000

/** The broker a URL's scheme stands for. */
const URL_SCHEMES: Record<string, BrokerKind> = { 'redis:': 'redis', 'rediss:': 'redis', 'amqp:': 'rabbitmq', 'amqps:': 'rabbitmq' }

function brokerOfUrl (url: unknown): BrokerKind {
  let protocol: string | undefined
  try {
    protocol = new URL(String(url)).protocol
  } catch {
    throw new ConfigError('url', `"${redactUrl(String(url))}" is not a valid URL; give a RabbitMQ (amqp://, amqps://) or Redis (redis://, rediss://) URL, or set broker`)
  }
  const broker = URL_SCHEMES[protocol]
  if (broker === undefined) {
    throw new ConfigError('url', `"${redactUrl(String(url))}" has scheme "${protocol}", which names no broker Herald knows: use amqp:// or amqps:// for RabbitMQ, redis:// or rediss:// for Redis (Kafka takes bootstrapServers), or set broker`)
  }
  return broker
}

function pickBroker (options: MessagingOptions, env: NodeJS.ProcessEnv): BrokerKind {
  const option = options.broker !== undefined ? 'broker' : 'MESSAGING_BROKER'
  const chosen = options.broker ?? (env.MESSAGING_BROKER !== undefined && env.MESSAGING_BROKER !== '' ? env.MESSAGING_BROKER : undefined)
  if (chosen !== undefined) {
    if (!(BROKER_KINDS as readonly string[]).includes(chosen)) {
      throw new ConfigError(option, `unknown broker "${String(chosen)}"; use one of ${BROKER_KINDS.map(b => `"${b}"`).join(', ')}`)
    }
    return chosen as BrokerKind
  }
  if (options.bootstrapServers !== undefined) return 'kafka'
  if (options.url !== undefined) return brokerOfUrl(options.url)
  if ((env.KAFKA_BOOTSTRAP_SERVERS ?? '') !== '') return 'kafka'
  if ((env.RABBITMQ_URL ?? '') !== '') return 'rabbitmq'
  if ((env.REDIS_URL ?? '') !== '') return 'redis'
  return 'memory'
}

/**
 * Checks every option and environment variable and picks the broker, without connecting.
 * Throws a `ConfigError` naming the option, the value (password masked) and the fix.
 */
export function resolveMessagingOptions (options: MessagingOptions = {}, env: NodeJS.ProcessEnv = process.env): { resolved: ResolvedMessagingOptions, connect: Connector } {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', 'must be an object')
  checkKnownKeys('', options, MESSAGING_OPTION_KEYS)
  const broker = pickBroker(options, env)
  const source = options.source ?? (env.SERVICE_NAME !== undefined && env.SERVICE_NAME !== '' ? env.SERVICE_NAME : 'herald')
  if (typeof source !== 'string' || source === '') throw new ConfigError('source', 'must be a non-empty string naming the service, e.g. "orders-service"')
  const defaultTopic = options.defaultTopic ?? 'events'
  if (typeof defaultTopic !== 'string' || defaultTopic === '') throw new ConfigError('defaultTopic', 'must be a non-empty topic name, e.g. "events"')
  const connectTimeout = checkPositiveInt('connectTimeout', options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS, { max: 600_000 })
  const publishTimeout = checkPositiveInt('publishTimeout', options.publishTimeout ?? 10_000)
  const linger = checkPositiveInt('linger', options.linger ?? 0, { min: 0, max: 60_000 })
  const maxBatchSize = checkPositiveInt('maxBatchSize', options.maxBatchSize ?? 500)
  const maxMessageBytes = checkPositiveInt('maxMessageBytes', options.maxMessageBytes ?? 1024 * 1024)
  const outbox = resolveOutboxSettings(options.outbox)
  const tracing = options.tracing ?? true
  if (typeof tracing !== 'boolean') throw new ConfigError('tracing', `must be true or false, got ${JSON.stringify(tracing)}`)

  let connect: Connector
  let address: string
  switch (broker) {
    case 'kafka': {
      const settings = { ...resolveKafkaSettings(options.bootstrapServers, env, source, options.kafka), connectTimeout }
      address = settings.brokers.join(',')
      connect = async (deps) => (await import('./brokers/kafka/index.js')).createBroker(settings, deps)
      break
    }
    case 'rabbitmq': {
      const settings = { ...resolveRabbitMqSettings(options.url, env, options.rabbitmq), connectTimeout }
      address = redactUrl(settings.url)
      connect = async (deps) => (await import('./brokers/rabbitmq/index.js')).createBroker(settings, deps)
      break
    }
    case 'redis': {
      const settings = { ...resolveRedisSettings(options.url, env, options.redis), connectTimeout }
      address = redactUrl(settings.url)
      connect = async (deps) => (await import('./brokers/redis/index.js')).createBroker(settings, deps)
      break
    }
    case 'memory': {
      const settings = resolveMemorySettings(options.memory)
      address = 'in-process'
      connect = async (deps) => (await import('./brokers/memory/index.js')).createBroker(settings, deps)
      break
    }
  }
  return { resolved: { broker, source, defaultTopic, connectTimeout, publishTimeout, linger, maxBatchSize, maxMessageBytes, outbox, tracing, address }, connect }
}

/**
 * Why running on the embedded broker looks like a mistake in this process: it is in
 * production, or a real broker's address is set in the environment.
 */
function memoryMisfit (env: NodeJS.ProcessEnv): string | undefined {
  if (env.NODE_ENV === 'production') return 'NODE_ENV is "production"'
  if ((env.KAFKA_BOOTSTRAP_SERVERS ?? '') !== '') return 'KAFKA_BOOTSTRAP_SERVERS is set'
  for (const [name, value] of Object.entries(env)) {
    if (name.endsWith('_URL') && value !== undefined && /^(redis|rediss|amqp|amqps|kafka):\/\//i.test(value.trim())) return `${name} is set to a broker URL`
  }
  return undefined
}

/** Set once the embedded-broker warning was logged: once per process is enough to be seen. */
let warnedMemory = false

/** @internal Lets the embedded-broker warning be logged again (tests). */
export function resetMemoryWarning (): void {
  warnedMemory = false
}

/** Something that must stop before the broker closes (a consumer runner). */
export interface Closeable {
  stop(): Promise<void>
}

/**
 * One connection to one broker: a producer, the consumers started on it, health and
 * close. Create it with `createMessaging` (independent) or `configureMessaging` (the
 * process default). It connects on first use; call `connect()` to fail fast at start-up.
 * With an `outbox`, creating it takes the outbox directory (a `ConfigError` if it cannot
 * be used or another process has it) and starts relaying what a previous run left there.
 */
export class Messaging {
  readonly options: ResolvedMessagingOptions
  readonly logger: Logger
  readonly producer: Producer
  readonly #connect: Connector
  readonly #outbox: Outbox | undefined
  #broker: Promise<Broker> | undefined
  /** The adapter being connected or connected: `close()` closes it even mid-connect. */
  #adapter: Broker | undefined
  readonly #closeables = new Set<Closeable>()
  #closing: Promise<void> | undefined
  /** Set once the producer is flushed and the broker is going: no more broker calls. */
  #closed = false

  constructor (options: MessagingOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    const { resolved, connect } = resolveMessagingOptions(options, env)
    this.options = resolved
    this.#connect = connect
    const base = options.logger === false ? silentLogger : options.logger ?? createDefaultLogger()
    this.logger = childLogger(base, { component: 'herald', broker: resolved.broker })
    const misfit = resolved.broker === 'memory' && options.logger !== false ? memoryMisfit(env) : undefined
    if (misfit !== undefined && !warnedMemory) {
      warnedMemory = true
      this.logger.warn({ broker: 'memory' }, `Herald runs on the embedded in-process broker (nothing leaves this process, nothing survives a restart), but ${misfit}: set broker (or MESSAGING_BROKER) to the broker you mean`)
    }
    this.#outbox = resolved.outbox === undefined
      ? undefined
      : Outbox.open(resolved.outbox, {
        logger: childLogger(this.logger, { component: 'herald-outbox' }),
        publish: async (messages) => await (await this.broker()).publish(messages),
        publishTimeout: resolved.publishTimeout,
        maxBatchSize: resolved.maxBatchSize
      })
    this.producer = new Producer(() => this.broker(), resolved, this.#outbox)
    liveMessaging.add(this)
  }

  /** The outbox's state (`pending`, `bytes`, …), or `undefined` without an `outbox` option. */
  get outbox (): OutboxStats | undefined {
    return this.#outbox?.stats()
  }

  /** The connected broker adapter. Loads the adapter and connects on first call. */
  broker (): Promise<Broker> {
    if (this.#closed) return Promise.reject(new BrokerError('this Messaging instance is closed', { retriable: false }))
    this.#broker ??= (async () => {
      const broker = await this.#connect({ logger: this.logger, clientId: this.options.source })
      this.#adapter = broker
      const { connectTimeout } = this.options
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new BrokerError(
          `${this.options.broker} at ${this.options.address} did not answer within ${connectTimeout} ms (connectTimeout): check the address and port (something there accepts connections but does not speak ${this.options.broker}), or raise connectTimeout`,
          { code: 'HERALD_CONNECT_TIMEOUT' }
        )), connectTimeout)
      })
      try {
        await Promise.race([broker.connect(), late])
      } catch (err) {
        // Closing the half-open client leaves no socket or timer that keeps the process up.
        await broker.close().catch(() => {})
        if (this.#adapter === broker) this.#adapter = undefined
        throw err instanceof HeraldError ? err : new BrokerError(`could not connect to ${this.options.broker} at ${this.options.address}: ${redactText((err as Error).message ?? String(err))}`, { cause: err })
      } finally {
        clearTimeout(timer)
      }
      return broker
    })()
    // A failed connection is not cached: the next call tries again.
    this.#broker.catch(() => { this.#broker = undefined })
    return this.#broker
  }

  /**
   * Connects now; rejects with a `BrokerError` that says which broker at which address
   * could not be reached. With an outbox, a broker that is unreachable (a retriable
   * failure, or no answer within `publishTimeout`) is logged instead, and sends go to the
   * outbox until it answers: a service can start during an outage. A failure that will
   * not pass by itself (a refused credential) still rejects.
   */
  async connect (): Promise<void> {
    if (this.#outbox === undefined) {
      await this.broker()
      return
    }
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>(resolve => { timer = setTimeout(() => resolve('late'), this.options.publishTimeout) })
    try {
      const connecting = this.broker()
      connecting.catch(() => {})
      if (await Promise.race([connecting, late]) === 'late') {
        this.logger.warn({ address: this.options.address, publishTimeout: this.options.publishTimeout }, 'the broker did not answer at start-up; sends go to the outbox until it does')
      }
    } catch (err) {
      if (!isRetriable(err)) throw err
      this.logger.warn({ address: this.options.address, err: redactText(err instanceof Error ? err.message : String(err)) }, 'the broker is unreachable at start-up; sends go to the outbox until it answers')
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Publishes an event and resolves with it once the broker acknowledged it.
   *
   * @example
   * await messaging.publishEvent('order.paid', { orderId: 42 }, { topic: 'payments', key: '42' })
   */
  publishEvent<T> (name: string, data: T, options?: PublishOptions): Promise<Event<EventData<T>>> {
    return this.producer.publishEvent(name, data, options)
  }

  /**
   * Whether the broker answers, and the outbox's state when there is one. Never throws, and
   * resolves within `connectTimeout` (5 s at most): no answer by then is `ok: false`.
   */
  async health (): Promise<MessagingHealth> {
    let health: BrokerHealth
    const bound = Math.min(this.options.connectTimeout, HEALTH_TIMEOUT_MS)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.options.broker} at ${this.options.address} did not answer within ${bound} ms`)), bound)
    })
    try {
      health = await Promise.race([this.broker().then(async broker => await broker.health()), late])
    } catch (err) {
      health = { ok: false, broker: this.options.broker, detail: redactText(err instanceof Error ? err.message : String(err)) }
    } finally {
      clearTimeout(timer)
    }
    const outbox = this.#outbox?.stats()
    if (outbox === undefined) return health
    const held = outbox.pending === 0 ? 'empty' : `${outbox.pending} messages (${outbox.bytes} of ${outbox.maxBytes} bytes) waiting, ${outbox.state}`
    const refused = outbox.undeliverable === 0 ? '' : `, ${outbox.undeliverable} undeliverable set aside`
    return { ...health, detail: `${health.detail}; outbox ${outbox.dir}: ${held}${refused}`, outbox }
  }

  /** @internal Consumers register here so that `close()` stops them before the broker goes. */
  track (closeable: Closeable): () => void {
    this.#closeables.add(closeable)
    return () => this.#closeables.delete(closeable)
  }

  /**
   * Stops the consumers started on this instance (draining in-flight handlers), sends
   * every pending publish, lets the outbox's relay drain it for up to `publishTimeout`
   * (what is left stays on disk for the next start), then closes the broker connections.
   * Idempotent.
   */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#closeables].map(c => c.stop()))
      await this.producer.close()
      await this.#outbox?.close(this.options.publishTimeout)
      this.#closed = true
      liveMessaging.delete(this)
      // A connection still being made is given up now rather than waited for.
      await this.#adapter?.close().catch(() => {})
      const broker = await this.#broker?.catch(() => undefined)
      await broker?.close()
    })()
    return this.#closing
  }
}

const noop = (): void => {}
const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/**
 * Creates an independent Messaging instance. Validates every option now.
 *
 * @example
 * const messaging = createMessaging({ broker: 'redis', url: 'redis://localhost:6379' })
 * await messaging.publishEvent('user.created', { id: 1 })
 */
export function createMessaging (options: MessagingOptions = {}): Messaging {
  return new Messaging(options)
}

let defaultMessaging: Messaging | undefined

/**
 * Creates a Messaging instance and makes it the process default, used by `getMessaging()`,
 * `getProducer()`, `publishEvent()`, the `@event` decorator and `startConsumers()`.
 *
 * @example
 * configureMessaging({ broker: 'kafka', bootstrapServers: 'localhost:9092' })
 */
export function configureMessaging (options: MessagingOptions = {}): Messaging {
  const messaging = createMessaging(options)
  defaultMessaging = messaging
  return messaging
}

/**
 * The process default Messaging instance. When `configureMessaging` was never called, one
 * is created from the environment (with nothing set: the embedded memory broker).
 */
export function getMessaging (): Messaging {
  defaultMessaging ??= createMessaging()
  return defaultMessaging
}

/** The default instance's producer. */
export function getProducer (): Producer {
  return getMessaging().producer
}

/**
 * Publishes an event through the default instance; resolves once the broker acknowledged it.
 *
 * @example
 * await publishEvent('user.created', { id: 1 }, { topic: 'user-events', key: '1' })
 */
export function publishEvent<T> (name: string, data: T, options?: PublishOptions): Promise<Event<EventData<T>>> {
  return getMessaging().publishEvent(name, data, options)
}

/** @internal Forgets the process default (tests). */
export function resetDefaultMessaging (): void {
  defaultMessaging = undefined
}
