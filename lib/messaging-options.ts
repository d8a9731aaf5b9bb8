// The messaging options: what `createMessaging` takes, checked and resolved without connecting.
import { BROKER_KINDS, type Broker, type BrokerDeps, type BrokerKind } from './brokers/broker.js'
import type { KafkaOptions } from './brokers/kafka/kafka-config.js'
import type { MemoryOptions } from './brokers/memory/memory-config.js'
import type { RabbitMqOptions } from './brokers/rabbitmq/rabbitmq-config.js'
import type { RedisOptions } from './brokers/redis/redis-config.js'
import { resolveAdapter } from './brokers/registry.js'
import { checkKnownKeys, checkPositiveInt } from './brokers/config-checks.js'
import { ConfigError } from './errors.js'
import type { Logger } from './logger.js'
import { resolveOutboxSettings, type OutboxOptions, type OutboxSettings } from './outbox/outbox-config.js'
import { redactUrl } from './redact.js'

/** Options of `createMessaging` / `configureMessaging`, the Fastify plugin and the Express middleware. */
export interface MessagingOptions {
  /**
   * Which broker. Default: `MESSAGING_BROKER`, else the broker whose variable is set, else
   * `memory`. Or a `Broker` instance: an adapter of your own (see the README, "Writing an
   * adapter"); Herald connects and closes it, and the other broker options do not apply.
   */
  broker?: BrokerKind | Broker
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
   * OpenTelemetry tracing and metrics when `@opentelemetry/api` is installed and an SDK is
   * registered (README, "Observability"). Default true; false: no spans, no trace context in
   * headers, no OTel metrics of this instance (`herald/metrics` still counts it).
   */
  tracing?: boolean
  kafka?: KafkaOptions
  rabbitmq?: RabbitMqOptions
  redis?: RedisOptions
  memory?: MemoryOptions
}

/** Options after defaults and validation. */
export interface ResolvedMessagingOptions {
  /** A built-in broker's kind, or the `kind` of the `Broker` instance given. */
  broker: BrokerKind | (string & {})
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

export type Connector = (deps: BrokerDeps) => Promise<Broker>

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

/** The names among `methods` that `value` has no function for. */
function missingMethods (value: object, methods: readonly string[]): string[] {
  return methods.filter(m => typeof (value as Record<string, unknown>)[m] !== 'function')
}

/** "has no a, b methods": what an object given as a logger or a broker lacks. */
function hasNo (missing: string[]): string {
  return `has no ${missing.join(', ')} method${missing.length > 1 ? 's' : ''}`
}

const LOGGER_METHODS = ['debug', 'info', 'warn', 'error'] as const

/**
 * `logger` must be a logger instance or `false`: pino's options (`{ level: "warn" }`, as
 * Fastify takes them) or `true` would otherwise be taken and fail at the first log line.
 */
function checkLogger (logger: unknown): void {
  if (logger === undefined || logger === false) return
  const missing = logger !== null && typeof logger === 'object' ? missingMethods(logger, LOGGER_METHODS) : [...LOGGER_METHODS]
  if (missing.length === 0) return
  const level = logger !== null && typeof logger === 'object' ? (logger as { level?: unknown }).level : undefined
  const hint = typeof level === 'string' ? `; for Herald's own logger at another level, leave logger out and set HERALD_LOG_LEVEL=${level}` : ''
  const got = logger !== null && typeof logger === 'object' ? `an object, but it ${hasNo(missing)}` : JSON.stringify(logger)
  throw new ConfigError('logger', `must be a pino-compatible logger (debug, info, warn and error methods, e.g. pino() or fastify.log), or false for none; got ${got}${hint}`)
}

/** The methods a `Broker` instance passed as `broker` must have. */
const BROKER_METHODS = ['connect', 'publish', 'subscribe', 'health', 'close'] as const

function isBrokerInstance (value: unknown): value is Broker {
  if (value === null || typeof value !== 'object') return false
  const missing = missingMethods(value, BROKER_METHODS)
  if (missing.length > 0) {
    throw new ConfigError('broker', `an object given as broker must implement the Broker contract, but it ${hasNo(missing)}; see the README, "Writing an adapter", or give a broker name (${BROKER_KINDS.map(b => `"${b}"`).join(', ')})`)
  }
  if (typeof (value as Broker).kind !== 'string' || (value as Broker).kind === '') {
    throw new ConfigError('broker.kind', 'the Broker instance must have a non-empty string kind naming it in logs and health, e.g. "nats"')
  }
  return true
}

function pickBroker (options: MessagingOptions, env: NodeJS.ProcessEnv): BrokerKind {
  const option = options.broker !== undefined ? 'broker' : 'MESSAGING_BROKER'
  const chosen = (options.broker as BrokerKind | undefined) ?? (env.MESSAGING_BROKER !== undefined && env.MESSAGING_BROKER !== '' ? env.MESSAGING_BROKER : undefined)
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
  checkLogger(options.logger)

  const resolved = { source, defaultTopic, connectTimeout, publishTimeout, linger, maxBatchSize, maxMessageBytes, outbox, tracing }
  if (isBrokerInstance(options.broker)) {
    const instance = options.broker
    const others = (['bootstrapServers', 'url', 'kafka', 'rabbitmq', 'redis', 'memory'] as const).filter(k => options[k] !== undefined)
    if (others.length > 0) throw new ConfigError(others[0]!, `cannot be given with a Broker instance as broker: the instance has its own settings; remove ${others.map(k => `"${k}"`).join(', ')}`)
    return { resolved: { ...resolved, broker: instance.kind, address: instance.kind }, connect: async () => instance }
  }
  const broker = pickBroker(options, env)
  const adapter = resolveAdapter(broker, { ...options, source, connectTimeout }, env)
  return { resolved: { ...resolved, broker, address: adapter.address }, connect: adapter.create }
}

/**
 * Why running on the embedded broker looks like a mistake in this process: it is in
 * production, or a real broker's address is set in the environment.
 */
export function memoryMisfit (env: NodeJS.ProcessEnv): string | undefined {
  if (env.NODE_ENV === 'production') return 'NODE_ENV is "production"'
  if ((env.KAFKA_BOOTSTRAP_SERVERS ?? '') !== '') return 'KAFKA_BOOTSTRAP_SERVERS is set'
  for (const [name, value] of Object.entries(env)) {
    if (name.endsWith('_URL') && value !== undefined && /^(redis|rediss|amqp|amqps|kafka):\/\//i.test(value.trim())) return `${name} is set to a broker URL`
  }
  return undefined
}

