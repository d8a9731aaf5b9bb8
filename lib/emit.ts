import { ConfigError } from './errors.js'
import type { Event } from './event.js'
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
