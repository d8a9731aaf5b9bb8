import type { OutgoingMessage } from './brokers/broker.js'
import { ConfigError, ErrorCode, HeraldError, isRetriable } from './errors.js'
import { createEvent, encodeEvent, eventHeaders, type Event } from './event.js'
import type { Messaging } from './messaging.js'

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
interface BuiltEvent {
  name: string
  topic: string
  message: OutgoingMessage
}

/**
 * A reply body as the integrations hand it over: its value, and its JSON text when the
 * integration has it (what the client receives, e.g. Fastify's serializer output). With the
 * text, an event whose data is the whole body carries that text as is: no parse, no second
 * serialisation, and the event holds exactly the bytes the client got.
 */
export interface ReplyBody {
  /** The body as a value (parsed from the text on first call, when that is how it is known). */
  value(): unknown
  /** The body's JSON text, when it is known to be JSON. */
  json: string | undefined
}

/** A reply body known only as a value. */
export const bodyOfValue = (value: unknown): ReplyBody => ({ value: () => value, json: undefined })

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
  for (const name in headers) size += Buffer.byteLength(name) + Buffer.byteLength(headers[name]!)
  return size
}

function buildFailure (config: EventConfig, topic: string, message: string, code: string, cause?: unknown): HeraldError {
  return new HeraldError(`event "${config.name}" (topic "${topic}"): ${message}`, { code, retriable: false, cause })
}

/** Runs the `data()` mapper, if any: the only step of building that may wait. */
async function mappedData (config: EventConfig, topic: string, body: ReplyBody, request: unknown): Promise<unknown> {
  try {
    return await config.data!(body.value(), request)
  } catch (err) {
    throw buildFailure(config, topic, `its data() mapper threw: ${err instanceof Error ? err.message : String(err)}`, ErrorCode.EventMapper, err)
  }
}

/**
 * Builds the message of one event: key, envelope and size, checked now so that a body JSON
 * cannot carry, or one over maxMessageBytes, fails the reply before any event is published.
 * `mapped`: what the `data()` mapper returned, when the config has one.
 */
function buildEvent (messaging: Messaging, config: EventConfig, topic: string, body: ReplyBody, mapped: unknown): BuiltEvent {
  const whole = config.data === undefined && config.includeResult !== false
  const data = config.data !== undefined ? mapped : whole ? undefined : {}
  const key = config.keyField === undefined ? undefined : keyOf(body.value(), config.keyField)
  if (config.keyField !== undefined && key === undefined) {
    throw buildFailure(config, topic, `keyField "${config.keyField}" is missing from the reply body (or null), so the event would have no key and lose its order; reply with that field or change keyField`, ErrorCode.EventKey)
  }
  const spliced = whole ? body.json : undefined
  const event = createEvent(config.name, whole && spliced === undefined ? body.value() : data, messaging.options.source)
  let value: Buffer
  try {
    value = encodeEvent(event, spliced)
  } catch (err) {
    throw buildFailure(config, topic, `its data ${(err as Error).message.replace(/^the message /, '')}`, ErrorCode.EventEncoding, err)
  }
  const headers = eventHeaders(event)
  const size = messageBytes(value, key, headers)
  const max = messaging.options.maxMessageBytes
  if (size > max) {
    throw buildFailure(config, topic, `the message would be ${size} bytes, over maxMessageBytes (${max}); publish less (e.g. map the data with data()) or raise maxMessageBytes`, ErrorCode.MessageTooLarge)
  }
  return { name: config.name, topic, message: { topic, value, key, headers } }
}

/**
 * Publishes the events of one reply, all or nothing as far as the route can tell: every
 * event is built first (mapper, key, encoding, size), so a bug fails the reply before
 * anything is published; then all are sent in the same tick, so they travel in one
 * producer batch. Resolves with `undefined` when every one was acknowledged, else with
 * what failed and, for a publish failure, which events were published and which not.
 */
export async function publishRouteEvents (messaging: Messaging, configs: readonly EventConfig[], result: ReplyBody, request: unknown): Promise<RouteEventsFailure | undefined> {
  const built: BuiltEvent[] = []
  for (const config of configs) {
    const topic = config.topic ?? messaging.options.defaultTopic
    try {
      const mapped = config.data === undefined ? undefined : await mappedData(config, topic, result, request)
      built.push(buildEvent(messaging, config, topic, result, mapped))
    } catch (error) {
      return { stage: 'build', name: config.name, topic, error }
    }
  }
  const producer = messaging.producer
  if (built.length === 1) {
    // The usual route: one event, one promise to wait for.
    const only = built[0]!
    try {
      await producer.sendEvent(only.message, only.name)
      return undefined
    } catch (error) {
      return { stage: 'publish', events: [{ name: only.name, topic: only.topic, published: false, error }], retriable: isRetriable(error) }
    }
  }
  const settled = await Promise.allSettled(built.map(b => producer.sendEvent(b.message, b.name)))
  const events: EventOutcome[] = built.map((b, i) => {
    const s = settled[i]!
    return s.status === 'fulfilled' ? { name: b.name, topic: b.topic, published: true } : { name: b.name, topic: b.topic, published: false, error: s.reason }
  })
  const failed = events.filter(e => !e.published)
  if (failed.length === 0) return undefined
  return { stage: 'publish', events, retriable: failed.every(e => isRetriable(e.error)) }
}
