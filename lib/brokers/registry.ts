/**
 * The broker adapters Herald ships, each loaded only when chosen: choosing Redis never
 * loads kafkajs or amqplib. Settings are resolved here at once (no client is imported for
 * that), so a bad option fails when the Messaging instance is created, not at connect().
 */
import { ConfigError } from '../errors.js'
import { redactUrl } from '../redact.js'
import type { Broker, BrokerDeps, BrokerKind } from './broker.js'
import type { UrlBrokerSettings } from './config-checks.js'
import { resolveKafkaSettings, type KafkaOptions, type KafkaSettings } from './kafka/kafka-config.js'
import { resolveMemorySettings, type MemoryOptions, type MemorySettings } from './memory/memory-config.js'
import { resolveRabbitMqSettings, type RabbitMqOptions, type RabbitMqSettings } from './rabbitmq/rabbitmq-config.js'
import { resolveRedisSettings, type RedisOptions, type RedisSettings } from './redis/redis-config.js'

/**
 * What every adapter folder's `index.ts` exports: its kind, its settings resolver (from
 * `<kind>-config.ts`, no client import) and the factory of its `Broker`.
 */
export interface AdapterModule<S> {
  readonly kind: BrokerKind
  readonly resolveSettings: (...args: never[]) => S
  createBroker(settings: S, deps: BrokerDeps): Broker
}

/** What the messaging options give an adapter to resolve its settings from. */
export interface AdapterInput {
  bootstrapServers?: string | string[] | undefined
  url?: string | undefined
  source: string
  connectTimeout: number
  kafka?: KafkaOptions | undefined
  rabbitmq?: RabbitMqOptions | undefined
  redis?: RedisOptions | undefined
  memory?: MemoryOptions | undefined
}

/** One adapter, resolved: its address for logs and errors, and how to create its broker. */
export interface ResolvedAdapter {
  /** Where the broker is, password masked. */
  address: string
  /** Loads the adapter (and its client library) and creates the broker. */
  create(deps: BrokerDeps): Promise<Broker>
}

interface Entry<S> {
  /** The npm package the adapter needs, or undefined when it needs none. */
  client: string | undefined
  resolve(input: AdapterInput, env: NodeJS.ProcessEnv): { settings: S, address: string }
  load(): Promise<AdapterModule<S>>
}

/** The entry of an adapter reached by one URL: its address is that URL, password masked. */
function urlAdapter<S extends UrlBrokerSettings<unknown>> (client: string, resolve: (input: AdapterInput, env: NodeJS.ProcessEnv) => S, load: () => Promise<AdapterModule<S>>): Entry<S> {
  return {
    client,
    resolve: (input, env) => {
      const settings: S = { ...resolve(input, env), connectTimeout: input.connectTimeout }
      return { settings, address: redactUrl(settings.url) }
    },
    load
  }
}

const ADAPTERS: { [K in BrokerKind]: Entry<any> } = {
  kafka: {
    client: 'kafkajs',
    resolve: (input, env) => {
      const settings: KafkaSettings = { ...resolveKafkaSettings(input.bootstrapServers, env, input.source, input.kafka), connectTimeout: input.connectTimeout }
      return { settings, address: settings.brokers.join(',') }
    },
    load: async () => await import('./kafka/index.js')
  } satisfies Entry<KafkaSettings>,
  rabbitmq: urlAdapter<RabbitMqSettings>('amqplib', (input, env) => resolveRabbitMqSettings(input.url, env, input.rabbitmq), async () => await import('./rabbitmq/index.js')),
  redis: urlAdapter<RedisSettings>('ioredis', (input, env) => resolveRedisSettings(input.url, env, input.redis), async () => await import('./redis/index.js')),
  memory: {
    client: undefined,
    resolve: (input) => ({ settings: resolveMemorySettings(input.memory), address: 'in-process' }),
    load: async () => await import('./memory/index.js')
  } satisfies Entry<MemorySettings>
}

/** True when `err` says that `pkg` itself (not something else) could not be found. */
function isMissingPackage (err: unknown, pkg: string): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false
  const message = err instanceof Error ? err.message : String(err)
  return message.includes(`'${pkg}'`) || message.includes(`"${pkg}"`)
}

/**
 * Loads an adapter module through `load`; a client library that is not installed becomes a
 * `ConfigError` naming the package and the command that installs it.
 */
export async function loadAdapter<S> (kind: string, client: string | undefined, load: () => Promise<AdapterModule<S>>): Promise<AdapterModule<S>> {
  try {
    return await load()
  } catch (err) {
    if (client !== undefined && isMissingPackage(err, client)) {
      throw new ConfigError('broker', `broker "${kind}" needs the package ${client}, which is not installed: run \`npm i ${client}\` in your project`)
    }
    throw err
  }
}

/** Resolves the settings of a built-in adapter now; its module loads on `create`. */
export function resolveAdapter (kind: BrokerKind, input: AdapterInput, env: NodeJS.ProcessEnv): ResolvedAdapter {
  const entry = ADAPTERS[kind]
  const { settings, address } = entry.resolve(input, env)
  return {
    address,
    create: async (deps) => (await loadAdapter(kind, entry.client, entry.load)).createBroker(settings, deps)
  }
}
