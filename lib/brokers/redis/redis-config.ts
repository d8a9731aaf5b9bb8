import type { IORedisOptions } from '../client-types.js'
import { ConfigError } from '../../errors.js'
import { redactUrl } from '../../redact.js'
import { checkKnownKeys, checkObject, checkPositiveInt, resolveBrokerUrl, type BrokerUrlSource, type UrlBrokerSettings } from '../config-checks.js'

/** Redis options, under `redis` in the messaging options. */
export interface RedisOptions {
  /** Prefix of the stream keys: the stream of topic `t` is `${prefix}t`. Default none. */
  prefix?: string
  /**
   * Passed to `new Redis(url, options)`: `tls`, `password`, `db`, … Herald connects with
   * `protocol: 2` (RESP2) and `maxRetriesPerRequest: 10` unless given here; `lazyConnect`
   * is always on and `keyPrefix` is refused (use `prefix`).
   */
  client?: IORedisOptions
  /**
   * Opt-in approximate cap on stream length (`XADD MAXLEN ~ n`). Off by default: trimming
   * can delete entries a group has not consumed yet.
   */
  maxLen?: number
  /**
   * Milliseconds an entry may stay pending with a consumer that shows no sign of life
   * before another consumer of the group takes it over (`XAUTOCLAIM` min-idle-time):
   * how long the messages of a crashed worker wait. A live subscription refreshes the
   * entries it holds about three times per period, however long its handlers take.
   * Default 30000, at least 100.
   */
  claimIdleMs?: number
}

/** `connectTimeout` bounds connecting until Redis answers. */
export interface RedisSettings extends UrlBrokerSettings<RedisOptions> {
  prefix: string
}

const REDIS_OPTION_KEYS: ReadonlyArray<keyof RedisOptions> = ['prefix', 'client', 'maxLen', 'claimIdleMs']

/** `claimIdleMs` when the option is not given. */
export const DEFAULT_CLAIM_IDLE_MS = 30_000

const URL_SOURCE: BrokerUrlSource = {
  envVar: 'REDIS_URL',
  fallback: 'redis://localhost:6379',
  schemes: ['redis', 'rediss'],
  example: 'redis://:password@localhost:6379/0 (or rediss:// for TLS)'
}

/** Validates the Redis options; throws a `ConfigError` naming the option and the fix. */
export function resolveRedisSettings (url: string | undefined, env: NodeJS.ProcessEnv, options: RedisOptions | undefined): RedisSettings {
  const { option, value, parsed } = resolveBrokerUrl(url, env, URL_SOURCE)
  // ioredis reads the path as the database number: anything else would send SELECT NaN.
  const database = parsed.pathname.replace(/^\//, '')
  if (database !== '' && !/^\d+$/.test(database)) {
    throw new ConfigError(option, `"${redactUrl(value)}" names database "${safeDecode(database)}", but a Redis database is a number (the URL path, e.g. /0); use the form ${URL_SOURCE.example}`)
  }
  checkKnownKeys('redis', checkObject('redis', options), REDIS_OPTION_KEYS)
  const prefix = options?.prefix ?? ''
  if (typeof prefix !== 'string') throw new ConfigError('redis.prefix', `must be a string, got ${JSON.stringify(prefix)}`)
  if (options?.maxLen !== undefined && (!Number.isInteger(options.maxLen) || options.maxLen < 1)) {
    throw new ConfigError('redis.maxLen', `must be a whole number above 0, got ${JSON.stringify(options.maxLen)}; leave it unset to never trim`)
  }
  if (options?.claimIdleMs !== undefined) checkPositiveInt('redis.claimIdleMs', options.claimIdleMs, { min: 100 })
  const client = checkObject('redis.client', options?.client)
  if (client.keyPrefix !== undefined && client.keyPrefix !== '') {
    throw new ConfigError('redis.client.keyPrefix', `is not supported (got ${JSON.stringify(client.keyPrefix)}); set redis.prefix instead, which Herald applies to its stream keys`)
  }
  return { url: value, prefix, options: options ?? {} }
}

function safeDecode (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
