import { HandlerError } from '../errors.js'
import type { RetryOptions, RetryPolicy } from './handler.js'

function wholeNumber (where: string, option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new HandlerError(`${where}: ${option} must be a whole number of at least ${min}, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Validates retry options with their defaults; throws a `HandlerError` naming the handler and the option. */
export function resolveRetryPolicy (where: string, options: RetryOptions): RetryPolicy {
  const backoff = options.backoff ?? 'exponential'
  if (backoff !== 'exponential' && backoff !== 'fixed') {
    throw new HandlerError(`${where}: backoff must be "exponential" or "fixed", got ${JSON.stringify(backoff)}`)
  }
  const deadLetter = options.deadLetter
  if (deadLetter !== undefined && deadLetter !== false && (typeof deadLetter !== 'string' || deadLetter === '')) {
    throw new HandlerError(`${where}: deadLetter must be a topic name or false, got ${JSON.stringify(deadLetter)}`)
  }
  const policy: RetryPolicy = {
    maxRetries: wholeNumber(where, 'maxRetries', options.maxRetries ?? 3, 0),
    retryDelay: wholeNumber(where, 'retryDelay', options.retryDelay ?? 1000, 0),
    backoff,
    maxRetryDelay: wholeNumber(where, 'maxRetryDelay', options.maxRetryDelay ?? 60_000, 0),
    deadLetter,
    timeout: options.timeout === undefined ? undefined : wholeNumber(where, 'timeout', options.timeout, 1)
  }
  return policy
}

/** Validates a topic list; throws naming the handler. */
export function resolveTopics (where: string, topic: unknown): string[] {
  const topics = Array.isArray(topic) ? topic : [topic]
  if (topics.length === 0 || topics.some(t => typeof t !== 'string' || t === '')) {
    throw new HandlerError(`${where}: topic must be a topic name or a non-empty array of them, got ${JSON.stringify(topic)}`)
  }
  return [...new Set(topics as string[])]
}

export function resolveConcurrency (where: string, value: unknown): number {
  return wholeNumber(where, 'concurrency', value ?? 10, 1)
}

export function resolveGroup (where: string, value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value === '')) {
    throw new HandlerError(`${where}: group must be a non-empty string, got ${JSON.stringify(value)}`)
  }
  return value as string | undefined
}
