/**
 * How a message sits in a Redis stream entry. An entry has the fields `data` (the body),
 * `key` (when set) and `headers` (a JSON object of strings); other fields are ignored, so
 * an entry written by another producer with only `data` is an ordinary message.
 */
import type { OutgoingMessage } from '../broker.js'
import { text } from './redis-replies.js'

export const DATA_FIELD = 'data'
export const KEY_FIELD = 'key'
export const HEADERS_FIELD = 'headers'

/** One stream entry as Herald reads it. */
export interface StreamEntry {
  readonly stream: string
  readonly id: string
  readonly value: Buffer
  readonly key: string | undefined
  readonly headers: Record<string, string>
  /** Why the fields could not be read as they should (no `data`, `headers` not a JSON object), for the log. */
  readonly problem: string | undefined
}

/** The `XADD` arguments after the stream key. */
export function xaddArguments (message: OutgoingMessage, maxLen: number | undefined): Array<string | Buffer | number> {
  const args: Array<string | Buffer | number> = []
  if (maxLen !== undefined) args.push('MAXLEN', '~', maxLen)
  args.push('*', DATA_FIELD, message.value)
  if (message.key !== undefined) args.push(KEY_FIELD, message.key)
  args.push(HEADERS_FIELD, JSON.stringify(message.headers))
  return args
}

/** True when a field name (a buffer, or a string from a non-buffer reply) is `name` (ASCII), without making a string of it. */
function isField (field: unknown, name: string): boolean {
  if (!Buffer.isBuffer(field)) return text(field) === name
  if (field.length !== name.length) return false
  for (let i = 0; i < name.length; i++) if (field[i] !== name.charCodeAt(i)) return false
  return true
}

/** Reads an entry's fields (`[name, value, name, value, …]`, as buffers). */
export function decodeEntry (stream: string, id: string, fields: readonly unknown[]): StreamEntry {
  let value: Buffer | undefined
  let key: string | undefined
  let headers: Record<string, string> = {}
  let problem: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]
    const raw = fields[i + 1]
    if (isField(name, DATA_FIELD)) value = Buffer.isBuffer(raw) ? raw : Buffer.from(text(raw))
    else if (isField(name, KEY_FIELD)) key = text(raw)
    else if (isField(name, HEADERS_FIELD)) {
      const parsed = decodeHeaders(text(raw))
      if (parsed === undefined) problem = 'its "headers" field is not a JSON object; headers ignored'
      else headers = parsed
    }
  }
  if (value === undefined) {
    const empty = 'it has no "data" field; delivered with an empty body'
    problem = problem === undefined ? empty : `${problem}; ${empty}`
  }
  return { stream, id, value: value ?? Buffer.alloc(0), key, headers, problem }
}

function decodeHeaders (json: string): Record<string, string> | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return undefined
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined
  const object = parsed as Record<string, unknown>
  // Herald writes strings only: then the parsed object is the headers as they are, no copy.
  // (An own `__proto__` from JSON.parse is not a header: copied, it is dropped as before.)
  let asWritten = true
  for (const name in object) {
    if (typeof object[name] !== 'string' || name === '__proto__') {
      asWritten = false
      break
    }
  }
  if (asWritten) return object as Record<string, string>
  const headers: Record<string, string> = {}
  for (const [name, v] of Object.entries(object)) {
    if (v === undefined || v === null) continue
    headers[name] = typeof v === 'string' ? v : JSON.stringify(v)
  }
  return headers
}
