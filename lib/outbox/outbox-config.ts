import { resolve } from 'node:path'
import { ConfigError } from '../errors.js'
import { checkPositiveInt } from '../brokers/config-checks.js'

/** The `outbox` option of the messaging options. */
export interface OutboxOptions {
  /**
   * The directory of the spool: segment files, the relay's cursor and a lock file. Created
   * if missing. One process per directory: give each service instance its own (on a
   * volume that survives a restart of the process, or of the container).
   */
  dir: string
  /**
   * The most bytes of messages the outbox holds before a send fails with a 503 instead.
   * Default 67108864 (64 MiB). Disk use is at most this plus one segment (an eighth of it,
   * 8 MiB at most) of messages already relayed.
   */
  maxBytes?: number
}

export interface OutboxSettings {
  /** Absolute. */
  dir: string
  maxBytes: number
}

/** `outbox.maxBytes` when not given: 64 MiB. */
export const DEFAULT_OUTBOX_MAX_BYTES = 64 * 1024 * 1024

const KNOWN = new Set(['dir', 'maxBytes'])

/** Checks the `outbox` option; throws a `ConfigError` naming `outbox.<field>` and the fix. Touches no file. */
export function resolveOutboxSettings (value: unknown): OutboxSettings | undefined {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('outbox', `must be an object like { dir: "/var/lib/my-service/outbox" }, got ${JSON.stringify(value)}`)
  }
  const options = value as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new ConfigError(`outbox.${key}`, `is not an outbox option; the options are ${[...KNOWN].join(', ')}`)
  }
  if (typeof options.dir !== 'string' || options.dir.trim() === '') {
    throw new ConfigError('outbox.dir', `is required: a directory this process can write to, on a volume that survives a restart, e.g. "/var/lib/my-service/outbox"; got ${JSON.stringify(options.dir)}`)
  }
  const maxBytes = checkPositiveInt('outbox.maxBytes', options.maxBytes ?? DEFAULT_OUTBOX_MAX_BYTES)
  return { dir: resolve(options.dir), maxBytes }
}
