import type { TSchema } from '@sinclair/typebox'
import { HandlerError } from '../errors.js'
import { compiledSchema, isTypeBoxSchema } from './schema.js'
import type { RetryOptions, RetryPolicy } from './handler.js'

/** The longest delay a Node.js timer keeps (ms); a longer one fires at once, with a warning. */
export const MAX_TIMER_MS = 2_147_483_647

/** `maxMessageBytes` when neither the handler nor `startConsumers` gives one: 1 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_576

/** The options of each declaration, to refuse a misspelt one instead of ignoring it. */
export const RETRY_OPTIONS = ['maxRetries', 'retryDelay', 'backoff', 'maxRetryDelay', 'deadLetter', 'timeout', 'durableRetryAfter'] as const

/** `durableRetryAfter` when none is given: a retry due in a minute or more is stored in the broker (README, "Durable retries"). */
export const DEFAULT_DURABLE_RETRY_AFTER = 60_000
export const MESSAGE_HANDLER_OPTIONS = ['topic', 'group', 'schema', 'concurrency', 'autoStart', 'maxMessageBytes', ...RETRY_OPTIONS, 'raw'] as const
export const ON_EVENT_OPTIONS = ['schema', ...RETRY_OPTIONS, 'raw'] as const
export const CONSUMER_OPTIONS = ['topics', 'concurrency', 'autoStart', 'maxMessageBytes'] as const
export const BATCH_HANDLER_OPTIONS = ['topic', 'group', 'schema', 'maxBatchSize', 'maxWaitMs', 'autoStart', 'maxMessageBytes', ...RETRY_OPTIONS] as const

interface NumberRule {
  min: number
  max: number
  unit: string
  example: string
}

const NUMBER_RULES: Record<string, NumberRule> = {
  maxRetries: { min: 0, max: Number.MAX_SAFE_INTEGER, unit: '', example: 'maxRetries: 3 (retries after the first attempt; 0 for none)' },
  retryDelay: { min: 0, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'retryDelay: 5000 for 5 seconds' },
  maxRetryDelay: { min: 0, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'maxRetryDelay: 60000 for one minute' },
  durableRetryAfter: { min: 0, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'durableRetryAfter: 60000 to store retries of a minute or more in the broker, or false to keep every retry in the process' },
  timeout: { min: 1, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'timeout: 30000 for 30 seconds, or leave it out for no timeout' },
  concurrency: { min: 1, max: 100_000, unit: '', example: 'concurrency: 10 (1 handles one message at a time)' },
  maxBatchSize: { min: 1, max: 10_000, unit: '', example: 'maxBatchSize: 100 (the most messages in one batch)' },
  maxWaitMs: { min: 0, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'maxWaitMs: 50 to wait up to 50 ms for a batch to fill' },
  maxMessageBytes: { min: 1, max: Number.MAX_SAFE_INTEGER, unit: ' of bytes', example: 'maxMessageBytes: 1048576 for 1 MiB' },
  shutdownTimeout: { min: 0, max: MAX_TIMER_MS, unit: ' of milliseconds', example: 'shutdownTimeout: 30000 for 30 seconds' }
}

/** A whole number within the option's range; throws naming the option, the value and an example. */
export function wholeNumber (where: string, option: keyof typeof NUMBER_RULES, value: unknown): number {
  const rule = NUMBER_RULES[option]!
  if (typeof value !== 'number' || !Number.isInteger(value) || value < rule.min || value > rule.max) {
    const range = rule.max === Number.MAX_SAFE_INTEGER ? `of at least ${rule.min}` : `from ${rule.min} to ${rule.max}`
    const hint = typeof value === 'string' ? ` (a number, not a string)` : ''
    throw new HandlerError(`${where}: ${option} must be a whole number${rule.unit} ${range}, got ${show(value)}${hint}; e.g. ${rule.example}`)
  }
  return value
}

/**
 * Refuses options Herald does not know (a typo such as `retries` would otherwise be
 * ignored without a word), suggesting the closest known one.
 */
export function checkKnownOptions (where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue
    const close = closest(key, known)
    const suggestion = close === undefined ? '' : `did you mean "${close}"? `
    throw new HandlerError(`${where}: unknown option "${key}"; ${suggestion}The options are: ${known.join(', ')}`)
  }
}

/** Validates retry options with their defaults; throws a `HandlerError` naming the handler and the option. */
export function resolveRetryPolicy (where: string, options: RetryOptions): RetryPolicy {
  const backoff = options.backoff ?? 'exponential'
  if (backoff !== 'exponential' && backoff !== 'fixed') {
    throw new HandlerError(`${where}: backoff must be "exponential" or "fixed", got ${show(backoff)}; use "exponential" for retryDelay × 2^(retry−1), or "fixed" for the same delay before every retry`)
  }
  const deadLetter = options.deadLetter
  if (deadLetter !== undefined && deadLetter !== false && (typeof deadLetter !== 'string' || deadLetter.trim() === '')) {
    throw new HandlerError(`${where}: deadLetter must be a topic name or false, got ${show(deadLetter)}; name a destination such as "orders.failed", leave it out for "<topic>.<group>.dlq", or set false to drop failed messages`)
  }
  const policy: RetryPolicy = {
    maxRetries: wholeNumber(where, 'maxRetries', options.maxRetries ?? 3),
    retryDelay: wholeNumber(where, 'retryDelay', options.retryDelay ?? 1000),
    backoff,
    maxRetryDelay: wholeNumber(where, 'maxRetryDelay', options.maxRetryDelay ?? 60_000),
    deadLetter,
    timeout: options.timeout === undefined ? undefined : wholeNumber(where, 'timeout', options.timeout),
    durableRetryAfter: resolveDurableRetryAfter(where, options.durableRetryAfter)
  }
  return policy
}

/** `false` and `Infinity` (never: every retry waits in the process) become Infinity; otherwise a whole number of ms. */
function resolveDurableRetryAfter (where: string, value: unknown): number {
  if (value === false || value === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  return wholeNumber(where, 'durableRetryAfter', value ?? DEFAULT_DURABLE_RETRY_AFTER)
}

/** Validates a topic list; throws naming the handler. */
export function resolveTopics (where: string, topic: unknown, option = 'topic'): string[] {
  const topics = Array.isArray(topic) ? topic : [topic]
  if (topics.length === 0 || topics.some(t => typeof t !== 'string' || t.trim() === '')) {
    throw new HandlerError(`${where}: ${option} must be a topic name or a non-empty array of them, got ${show(topic)}; e.g. ${option}: "orders" or ${option}: ["orders", "payments"]`)
  }
  return [...new Set(topics as string[])]
}

export function resolveConcurrency (where: string, value: unknown): number {
  return wholeNumber(where, 'concurrency', value ?? 10)
}

/** Undefined when not given (the `startConsumers` value, else 1 MiB, applies). */
export function resolveMaxMessageBytes (where: string, value: unknown): number | undefined {
  return value === undefined ? undefined : wholeNumber(where, 'maxMessageBytes', value)
}

export function resolveGroup (where: string, value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value.trim() === '')) {
    throw new HandlerError(`${where}: group must be a non-empty string, got ${show(value)}; name the consumer group, e.g. group: "billing", or leave it out to use the service name (source)`)
  }
  return value as string | undefined
}

export function resolveAutoStart (where: string, value: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new HandlerError(`${where}: autoStart must be true or false, got ${show(value)}`)
  }
  return value === true
}

/**
 * Checks a handler's schema now, not on the first message: it must be a TypeBox schema
 * that compiles. A JSON Schema object or a schema of another library is refused.
 */
export function resolveSchema (where: string, value: unknown): TSchema | undefined {
  if (value === undefined) return undefined
  if (!isTypeBoxSchema(value)) {
    throw new HandlerError(`${where}: schema must be a TypeBox schema made with Type.* from @sinclair/typebox, e.g. schema: Type.Object({ id: Type.Number() }); got ${show(value)}, which is not one (a plain JSON Schema object or another library's schema is not accepted)`)
  }
  try {
    compiledSchema(value)
  } catch (err) {
    throw new HandlerError(`${where}: schema cannot be compiled by TypeBox: ${(err as Error).message}; build it from Type.* types`, { cause: err })
  }
  return value
}

/**
 * `raw: true` hands the body over as a Buffer, undecoded: there is nothing for a schema to
 * check, so the two together are refused rather than the schema ignored.
 */
export function resolveRaw (where: string, value: unknown, schema: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new HandlerError(`${where}: raw must be true or false, got ${show(value)}; raw: true hands the handler the message body as a Buffer, undecoded`)
  }
  if (value === true && schema !== undefined) {
    throw new HandlerError(`${where}: raw: true and a schema cannot go together: a raw handler gets the body as a Buffer, undecoded, so there is nothing to validate; remove the schema (and check the bytes in the handler), or remove raw to get the decoded JSON validated`)
  }
  return value === true
}

function show (value: unknown): string {
  if (value === undefined) return 'undefined'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n`
  try {
    const text = JSON.stringify(value)
    return text.length > 80 ? `${text.slice(0, 80)}…` : text
  } catch {
    return String(value)
  }
}

/** The known option a misspelt one most likely meant: same letters in another case, one inside the other, or a couple of typos away. */
function closest (key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase()
  let best: { name: string, distance: number } | undefined
  for (const name of known) {
    const n = name.toLowerCase()
    if (n === k) return name
    const distance = k.length >= 4 && (n.includes(k) || k.includes(n)) ? 1 : editDistance(k, n)
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name, distance }
  }
  return best?.name
}

function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_v, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}
