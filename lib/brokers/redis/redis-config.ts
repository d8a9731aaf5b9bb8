import type { RedisOptions as IORedisOptions } from 'ioredis'
import { ConfigError } from '../../errors.js'
import { checkObject, parseBrokerUrl } from '../config-checks.js'

/** Redis options, under `redis` in the messaging options. */
export interface RedisOptions {
  /** Prefix of the stream keys: the stream of topic `t` is `${prefix}t`. Default none. */
  prefix?: string
  /** Passed to `new Redis(url, options)`: `tls`, `password`, `db`, … */
  client?: IORedisOptions
  /**
   * Opt-in approximate cap on stream length (`XADD MAXLEN ~ n`). Off by default: trimming
   * can delete entries a group has not consumed yet.
   */
  maxLen?: number
}

export interface RedisSettings {
  url: string
  prefix: string
  options: RedisOptions
}

const EXAMPLE = 'redis://:password@localhost:6379/0 (or rediss:// for TLS)'

/** Validates the Redis options; throws a `ConfigError` naming the option and the fix. */
export function resolveRedisSettings (url: string | undefined, env: NodeJS.ProcessEnv, options: RedisOptions | undefined): RedisSettings {
  const option = url !== undefined ? 'url' : 'REDIS_URL'
  const value = url ?? env.REDIS_URL ?? 'redis://localhost:6379'
  parseBrokerUrl(option, value, ['redis', 'rediss'], EXAMPLE)
  checkObject('redis', options)
  const prefix = options?.prefix ?? ''
  if (typeof prefix !== 'string') throw new ConfigError('redis.prefix', `must be a string, got ${JSON.stringify(prefix)}`)
  if (options?.maxLen !== undefined && (!Number.isInteger(options.maxLen) || options.maxLen < 1)) {
    throw new ConfigError('redis.maxLen', `must be a whole number above 0, got ${JSON.stringify(options.maxLen)}; leave it unset to never trim`)
  }
  return { url: value, prefix, options: options ?? {} }
}
