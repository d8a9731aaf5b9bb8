import { randomUUID } from 'node:crypto'
import { InvalidMessageError } from './errors.js'

/**
 * The envelope Herald puts on the wire: `{"id","name","data","timestamp","source"}`.
 * `id` is a UUID (use it to make handlers idempotent), `timestamp` ISO-8601 UTC.
 */
export interface Event<T = unknown> {
  id: string
  name: string
  data: T
  timestamp: string
  source: string
}

/** Header names Herald sets on every event, so a non-Herald consumer can route without parsing. */
export const HEADER_EVENT_NAME = 'event-name'
export const HEADER_EVENT_ID = 'event-id'
export const HEADER_EVENT_SOURCE = 'event-source'
export const HEADER_CONTENT_TYPE = 'content-type'
export const JSON_CONTENT_TYPE = 'application/json'

/** Builds a new event with a fresh id and the current time. */
export function createEvent<T> (name: string, data: T, source: string): Event<T> {
  return { id: randomUUID(), name, data, timestamp: new Date().toISOString(), source }
}

/** The headers that travel with an event: its name, id and source, and the content type. */
export function eventHeaders (event: Event): Record<string, string> {
  return {
    [HEADER_CONTENT_TYPE]: JSON_CONTENT_TYPE,
    [HEADER_EVENT_NAME]: event.name,
    [HEADER_EVENT_ID]: event.id,
    [HEADER_EVENT_SOURCE]: event.source
  }
}

/**
 * Serialises a value as the UTF-8 JSON body of a message. Throws an `InvalidMessageError`
 * for what JSON cannot carry (a BigInt, a cycle, `undefined` at the top level).
 */
export function encodeJson (value: unknown): Buffer {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (err) {
    throw new InvalidMessageError(`the message cannot be serialised as JSON: ${(err as Error).message}`, { cause: err })
  }
  if (text === undefined) throw new InvalidMessageError('the message cannot be serialised as JSON: it is undefined or a function')
  return Buffer.from(text, 'utf8')
}

// A `__proto__` key in untrusted JSON becomes an own property that a later spread or
// Object.assign would turn into a prototype: drop it while parsing.
function dropProtoKeys (key: string, value: unknown): unknown {
  return key === '__proto__' ? undefined : value
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Parses a message body. Throws an `InvalidMessageError` (never retried, dead-lettered)
 * when the body is empty, not UTF-8 or not JSON.
 */
export function decodeJson (value: Uint8Array): unknown {
  if (value.length === 0) throw new InvalidMessageError('the message body is empty; Herald expects JSON')
  let text: string
  try {
    text = utf8.decode(value)
  } catch (err) {
    throw new InvalidMessageError('the message body is not valid UTF-8; Herald expects UTF-8 JSON', { cause: err })
  }
  try {
    return JSON.parse(text, dropProtoKeys)
  } catch (err) {
    throw new InvalidMessageError(`the message body is not JSON (${(err as Error).message})`, { cause: err })
  }
}

/** True when a decoded body has the shape of a Herald event envelope. */
export function isEvent (body: unknown): body is Event {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return false
  const o = body as Record<string, unknown>
  return typeof o.id === 'string' && typeof o.name === 'string' && 'data' in o && typeof o.timestamp === 'string'
}

/**
 * What a consumer makes of a message: the payload a `messageHandler` receives (an event's
 * `data`, or the whole body of a plain message) and the event, when there is one. A plain
 * message that carries an `event-name` header (another producer following the header
 * convention) is seen as an event whose data is the body.
 */
export function decodeMessage (value: Uint8Array, headers: Record<string, string>): { payload: unknown, event: Event | undefined } {
  const body = decodeJson(value)
  if (isEvent(body)) return { payload: body.data, event: body }
  const name = headers[HEADER_EVENT_NAME]
  if (name !== undefined && name !== '') {
    const event: Event = {
      id: headers[HEADER_EVENT_ID] ?? '',
      name,
      data: body,
      timestamp: '',
      source: headers[HEADER_EVENT_SOURCE] ?? ''
    }
    return { payload: body, event }
  }
  return { payload: body, event: undefined }
}
