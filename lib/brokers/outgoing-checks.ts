/**
 * What each broker refuses in a message whatever the wait: checked before a send joins a
 * batch (or the outbox), so that it fails alone and at once instead of failing its
 * batch-mates or sitting in the outbox forever. The adapters check again in `publish`,
 * for messages that did not come through the producer (an outbox an earlier version
 * wrote). No client library is imported here: the producer checks before the adapter loads.
 */
import { BrokerError, ErrorCode, HeraldError } from '../errors.js'
import type { BrokerKind, OutgoingMessage } from './broker.js'

const KAFKA_TOPIC = /^[a-zA-Z0-9._-]+$/
const KAFKA_MAX_TOPIC = 249
const RABBITMQ_MAX_ROUTING_KEY_BYTES = 255

const shown = (topic: string): string => JSON.stringify(topic.length > 60 ? `${topic.slice(0, 60)}…` : topic)

/** Why `kind` can never take a message to `topic`, or `undefined` when it can. */
export function topicProblem (kind: BrokerKind, topic: string): HeraldError | undefined {
  if (typeof topic !== 'string' || topic === '') {
    return new HeraldError(`the topic must be a non-empty string, got ${JSON.stringify(topic)}`, { code: ErrorCode.InvalidTopic, retriable: false })
  }
  if (kind === 'kafka' && (topic.length > KAFKA_MAX_TOPIC || !KAFKA_TOPIC.test(topic) || topic === '.' || topic === '..')) {
    return new HeraldError(`${shown(topic)} (${topic.length} characters) is an invalid topic name for Kafka: Kafka topic names are at most ${KAFKA_MAX_TOPIC} characters of letters, digits, ".", "_" and "-"; rename the topic`, { code: ErrorCode.InvalidTopic, retriable: false })
  }
  if (kind === 'rabbitmq' && Buffer.byteLength(topic) > RABBITMQ_MAX_ROUTING_KEY_BYTES) {
    return new HeraldError(`the topic ${shown(topic)} is ${Buffer.byteLength(topic)} bytes, over the ${RABBITMQ_MAX_ROUTING_KEY_BYTES} bytes RabbitMQ allows in a routing key; use a shorter topic name`, { code: ErrorCode.InvalidTopic, retriable: false })
  }
  return undefined
}

/**
 * The headers as every broker carries them: strings. `undefined` and `null` values are
 * dropped (a header that is not there), numbers, booleans and bigints become their text
 * (what a RabbitMQ or Redis consumer reads for them anyway); anything else (an object, an
 * array, a Buffer, a function) throws a `HeraldError` coded `HERALD_INVALID_HEADER`,
 * naming the header: there is no one text for it that every consumer would agree on.
 */
export function normalizeHeaders (headers: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers === undefined || headers === null) return out
  if (typeof headers !== 'object' || Array.isArray(headers)) {
    throw new HeraldError(`headers must be an object of string values, got ${Array.isArray(headers) ? 'an array' : typeof headers}`, { code: ErrorCode.InvalidHeader, retriable: false })
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue
    if (typeof value === 'string') out[name] = value
    else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') out[name] = String(value)
    else {
      const what = Buffer.isBuffer(value) ? 'a Buffer' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`
      throw new HeraldError(`header "${name}" is ${what}; header values must be strings (numbers and booleans are sent as text, undefined and null are left out): encode it yourself, e.g. JSON.stringify(value)`, { code: ErrorCode.InvalidHeader, retriable: false })
    }
  }
  return out
}

/**
 * The message as `kind` takes it (headers normalised), or the error that says why it
 * never will. Never throws.
 */
export function checkOutgoing (kind: BrokerKind | undefined, message: OutgoingMessage): { message: OutgoingMessage, error?: undefined } | { error: HeraldError } {
  const topicError = topicProblem(kind ?? 'memory', message.topic)
  if (topicError !== undefined) return { error: topicError }
  // Headers already all text (what the producer hands on) need no copy.
  if (headersAreText(message.headers)) return { message }
  try {
    return { message: { ...message, headers: normalizeHeaders(message.headers) } }
  } catch (err) {
    return { error: err as HeraldError }
  }
}

/** True when `headers` is an object of string values only: then `normalizeHeaders` would only copy it. */
export function headersAreText (headers: Record<string, unknown> | undefined): boolean {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return false
  for (const name of Object.keys(headers)) if (typeof headers[name] !== 'string') return false
  return true
}

/** Why a message over `max` bytes (body, key, header names and values) is refused, or undefined. */
export function sizeProblem (message: OutgoingMessage, max: number): BrokerError | undefined {
  let size = message.value.length + (message.key === undefined ? 0 : Buffer.byteLength(message.key))
  for (const [name, value] of Object.entries(message.headers)) {
    if (value !== undefined && value !== null) size += Buffer.byteLength(name) + Buffer.byteLength(String(value))
  }
  if (size <= max) return undefined
  return new BrokerError(
    `the message is ${size} bytes (body, key and headers), over maxMessageBytes (${max}); publish less (e.g. a reference to the data instead of the data), or raise maxMessageBytes if the broker takes bigger messages (Kafka: the topic's max.message.bytes)`,
    { code: ErrorCode.MessageTooLarge, retriable: false })
}
