import { ConfigError, HeraldError, isRetriable } from './errors.js'
import { createEvent, encodeJson, eventHeaders, type Event } from './event.js'
import type { Messaging } from './messaging.js'
import { MESSAGE_TOO_LARGE } from './producer.js'

/**
 * One event a route emits: the Fastify route's `config.event` and Express's `emit()`.
 * The same shape serves the `@event` decorator (without `data`).
 */
export interface EventConfig<Result = any, Req = any> {
  /** The event name, e.g. `user.created`. */
  name: string
  /** Where it goes; default the messaging's `defaultTopic`. */
  topic?: string
  /** The message key is `String(result[keyField])`: events of one entity keep their order. */
  keyField?: string
  /** Publish the reply body as the event's data. Default true; false publishes `{}`. */
  includeResult?: boolean
  /** Maps the reply body (and the request) to the event's data; wins over includeResult. */
  data?: (result: Result, request: Req) => unknown
}

const KNOWN = new Set(['name', 'topic', 'keyField', 'includeResult', 'data'])

/**
 * Checks one event config or an array of them; throws a `ConfigError` naming `where`
 * (the route) and what to fix. Returns the configs as an array.
 */
export function resolveEventConfigs (value: unknown, where: string): EventConfig[] {
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) throw new ConfigError(where, 'the event list is empty; give { name: "…" } or remove it')
  return list.map((c, i) => {
    const at = list.length > 1 ? `${where}[${i}]` : where
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new ConfigError(at, `must be an object like { name: "user.created", topic: "user-events" }, got ${JSON.stringify(c)}`)
    const config = c as Record<string, unknown>
    for (const key of Object.keys(config)) {
      if (!KNOWN.has(key)) throw new ConfigError(at, `unknown option "${key}"; the options are ${[...KNOWN].join(', ')}`)
    }
    if (typeof config.name !== 'string' || config.name === '') throw new ConfigError(`${at}.name`, `is required: the event name, e.g. "user.created"; got ${JSON.stringify(config.name)}`)
    if (config.topic !== undefined && (typeof config.topic !== 'string' || config.topic === '')) throw new ConfigError(`${at}.topic`, `must be a non-empty topic name, got ${JSON.stringify(config.topic)}`)
    if (config.keyField !== undefined && (typeof config.keyField !== 'string' || config.keyField === '')) throw new ConfigError(`${at}.keyField`, `must name a field of the reply body, e.g. "id"; got ${JSON.stringify(config.keyField)}`)
    if (config.includeResult !== undefined && typeof config.includeResult !== 'boolean') throw new ConfigError(`${at}.includeResult`, `must be true or false, got ${JSON.stringify(config.includeResult)}`)
    if (config.data !== undefined && typeof config.data !== 'function') throw new ConfigError(`${at}.data`, 'must be a function (result, request) => data')
    return config as unknown as EventConfig
  })
}

/** The message key for a result: `String(result[keyField])`, or none when the field is missing. */
export function keyOf (result: unknown, keyField: string | undefined): string | undefined {
  if (keyField === undefined || result === null || typeof result !== 'object') return undefined
  const value = (result as Record<string, unknown>)[keyField]
  return value === undefined || value === null ? undefined : String(value)
}

/**
 * Publishes the events of `configs` for one result; resolves once the broker acknowledged
 * all of them, rejects with the first `PublishError` otherwise.
 */
export async function publishForResult (messaging: Messaging, configs: readonly EventConfig[], result: unknown, request: unknown): Promise<Event[]> {
  return await Promise.all(configs.map(async (config) => {
    const data = config.data !== undefined ? await config.data(result, request) : config.includeResult === false ? {} : result
    return await messaging.publishEvent(config.name, data, { topic: config.topic, key: keyOf(result, config.keyField) })
  }))
}

/** One event of a reply, built and checked, ready to publish. */
export interface BuiltEvent {
  name: string
  topic: string
  data: unknown
  key: string | undefined
}

/** What became of one event of a reply. */
export interface EventOutcome {
  name: string
  topic: string
  published: boolean
  /** Why it was not published. */
  error?: unknown
}

/** Why a reply's events were not all published. */
export type RouteEventsFailure =
  /** An event could not be built (its mapper threw, its data is not JSON, it is too large, its key field is missing): a bug of the route; nothing was published. */
  | { stage: 'build', name: string, topic: string, error: unknown }
  /** Every event was built and sent together; some were not acknowledged. */
  | { stage: 'publish', events: EventOutcome[], retriable: boolean }

/** The size a broker sees: body, key, header names and values (as the producer counts it). */
function messageBytes (value: Buffer, key: string | undefined, headers: Record<string, string>): number {
  let size = value.length + (key === undefined ? 0 : Buffer.byteLength(key))
  for (const [name, v] of Object.entries(headers)) size += Buffer.byteLength(name) + Buffer.byteLength(String(v))
  return size
}

async function buildEvent (messaging: Messaging, config: EventConfig, result: unknown, request: unknown): Promise<BuiltEvent> {
  const topic = config.topic ?? messaging.options.defaultTopic
  const fail = (message: string, code: string, cause?: unknown): never => {
    throw new HeraldError(`event "${config.name}" (topic "${topic}"): ${message}`, { code, retriable: false, cause })
  }
  let data: unknown
  try {
    data = config.data !== undefined ? await config.data(result, request) : config.includeResult === false ? {} : result
  } catch (err) {
    fail(`its data() mapper threw: ${err instanceof Error ? err.message : String(err)}`, 'HERALD_EVENT_MAPPER', err)
  }
  const key = keyOf(result, config.keyField)
  if (config.keyField !== undefined && key === undefined) {
    fail(`keyField "${config.keyField}" is missing from the reply body (or null), so the event would have no key and lose its order; reply with that field or change keyField`, 'HERALD_EVENT_KEY')
  }
  // The envelope the producer will write, encoded now so that a body JSON cannot carry, or
  // one over maxMessageBytes, fails the reply before any of its events is published.
  const event = createEvent(config.name, data, messaging.options.source)
  let value: Buffer
  try {
    value = encodeJson(event)
  } catch (err) {
    return fail(`its data ${(err as Error).message.replace(/^the message /, '')}`, 'HERALD_EVENT_ENCODING', err)
  }
  const size = messageBytes(value, key, eventHeaders(event))
  const max = messaging.options.maxMessageBytes
  if (size > max) {
    fail(`the message would be ${size} bytes, over maxMessageBytes (${max}); publish less (e.g. map the data with data()) or raise maxMessageBytes`, MESSAGE_TOO_LARGE)
  }
  return { name: config.name, topic, data, key }
}

/**
 * Publishes the events of one reply, all or nothing as far as the route can tell: every
 * event is built first (mapper, key, encoding, size), so a bug fails the reply before
 * anything is published; then all are sent in the same tick, so they travel in one
 * producer batch. Resolves with `undefined` when every one was acknowledged, else with
 * what failed and, for a publish failure, which events were published and which not.
 */
export async function publishRouteEvents (messaging: Messaging, configs: readonly EventConfig[], result: unknown, request: unknown): Promise<RouteEventsFailure | undefined> {
  const built: BuiltEvent[] = []
  for (const config of configs) {
    try {
      built.push(await buildEvent(messaging, config, result, request))
    } catch (error) {
      return { stage: 'build', name: config.name, topic: config.topic ?? messaging.options.defaultTopic, error }
    }
  }
  const sends = built.map(b => messaging.publishEvent(b.name, b.data, { topic: b.topic, key: b.key }))
  const settled = await Promise.allSettled(sends)
  const events: EventOutcome[] = built.map((b, i) => {
    const s = settled[i]!
    return s.status === 'fulfilled' ? { name: b.name, topic: b.topic, published: true } : { name: b.name, topic: b.topic, published: false, error: s.reason }
  })
  const failed = events.filter(e => !e.published)
  if (failed.length === 0) return undefined
  return { stage: 'publish', events, retriable: failed.every(e => isRetriable(e.error)) }
}
