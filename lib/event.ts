import { randomUUID } from 'node:crypto'
import { InvalidMessageError } from './errors.js'

/**
 * The envelope Herald puts on the wire: `{"id","name","data","timestamp","source"}`.
 * `id` is a UUID (use it to make handlers idempotent), `timestamp` ISO-8601 UTC.
 */
/** What an event carries for `data` given as `T`: `undefined` travels as `null` (JSON has no undefined). */
export type EventData<T> = T extends undefined ? null : T

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

/**
 * Builds a new event with a fresh id and the current time. `data` is always there: an
 * `undefined` (no data, or a mapper that returned nothing) becomes `null`, which JSON can
 * carry, so that a consumer always finds `"data"` in the envelope and its handler gets `null`.
 */
export function createEvent<T> (name: string, data: T, source: string): Event<EventData<T>> {
  return { id: randomUUID(), name, data: (data === undefined ? null : data) as EventData<T>, timestamp: new Date().toISOString(), source }
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

/**
 * The envelope's bytes. With `dataJson` (JSON text, e.g. the reply body a client received)
 * that text is the envelope's `data` as is, instead of `event.data` serialised again:
 * `{"id":…,"name":…,"data":<dataJson>,"timestamp":…,"source":…}`. The caller vouches that
 * `dataJson` is JSON. Throws an `InvalidMessageError` for data JSON cannot carry.
 */
export function encodeEvent (event: Event, dataJson?: string): Buffer {
  if (dataJson === undefined) return encodeJson(event)
  return Buffer.from(`{"id":${JSON.stringify(event.id)},"name":${JSON.stringify(event.name)},"data":${dataJson},"timestamp":${JSON.stringify(event.timestamp)},"source":${JSON.stringify(event.source)}}`, 'utf8')
}

// JSON.parse makes a `__proto__` key an own property, harmless by itself; but a later
// Object.assign, or a naive deep merge in a handler, turns it (or `constructor.prototype`)
// into the prototype of an object, or of every object: prototype pollution. No producer
// has a reason to send such keys, so they are removed while parsing. The reviver is slow,
// so it runs only when the text may hold one: `\u` because an escaped key can spell either.
const MAY_POLLUTE = /__proto__|constructor|\\u/

function parseWithoutPollution (text: string): { value: unknown, removedKeys: string[] } {
  if (!MAY_POLLUTE.test(text)) return { value: JSON.parse(text), removedKeys: [] }
  const removedKeys: string[] = []
  const value: unknown = JSON.parse(text, (key, value: unknown) => {
    if (key === '__proto__') {
      removedKeys.push('__proto__')
      return undefined
    }
    if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) {
      removedKeys.push('constructor.prototype')
      return undefined
    }
    return value
  })
  return { value, removedKeys }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The offset of the first byte that does not start a valid UTF-8 sequence, or -1. */
function invalidUtf8Offset (bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i]!
    if (lead < 0x80) {
      i++
      continue
    }
    const more = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0
    if (more === 0 || i + more >= bytes.length) return i
    let cp = lead & (0x3f >> more)
    for (let k = 1; k <= more; k++) {
      const next = bytes[i + k]!
      if ((next & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (next & 0x3f)
    }
    const min = more === 1 ? 0x80 : more === 2 ? 0x800 : 0x10000
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i
    i += more + 1
  }
  return -1
}

/** What a message body held: the parsed JSON, and the keys removed because they could pollute prototypes. */
export interface DecodedBody {
  value: unknown
  /** `__proto__` and `constructor.prototype` keys removed while parsing, one entry each. */
  removedKeys: string[]
}

/**
 * Parses a message body. Throws an `InvalidMessageError` (never retried, dead-lettered)
 * saying what is wrong when the body is empty, not UTF-8 or not JSON. `__proto__` keys
 * and `constructor` keys holding a `prototype` are removed (see `removedKeys`).
 */
export function decodeBody (value: Uint8Array): DecodedBody {
  if (value.length === 0) throw new InvalidMessageError('the message body is empty (0 bytes); Herald expects a JSON body')
  let text: string
  try {
    text = utf8.decode(value)
  } catch (err) {
    const at = invalidUtf8Offset(value)
    const where = at < 0 ? '' : ` (byte 0x${value[at]!.toString(16).padStart(2, '0')} at offset ${at} of ${value.length})`
    throw new InvalidMessageError(`the message body is not valid UTF-8${where}; Herald expects a UTF-8 JSON body`, { cause: err })
  }
  try {
    return parseWithoutPollution(text)
  } catch (err) {
    const start = text.length > 32 ? `${text.slice(0, 32)}…` : text
    throw new InvalidMessageError(`the message body is not JSON (${(err as Error).message}; it starts with ${JSON.stringify(start)}); Herald expects a JSON body: a Herald event or any JSON value`, { cause: err })
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
export function decodeMessage (value: Uint8Array, headers: Record<string, string>): { payload: unknown, event: Event | undefined, removedKeys: string[] } {
  const { value: body, removedKeys } = decodeBody(value)
  if (isEvent(body)) return { payload: body.data, event: body, removedKeys }
  const name = headers[HEADER_EVENT_NAME]
  if (name !== undefined && name !== '') {
    const event: Event = {
      id: headers[HEADER_EVENT_ID] ?? '',
      name,
      data: body,
      timestamp: '',
      source: headers[HEADER_EVENT_SOURCE] ?? ''
    }
    return { payload: body, event, removedKeys }
  }
  return { payload: body, event: undefined, removedKeys }
}
