/**
 * How a message sits in a Redis stream entry, and how the stream commands' replies are
 * read. An entry has the fields `data` (the body), `key` (when set) and `headers` (a JSON
 * object of strings); other fields are ignored, so an entry written by another producer
 * with only `data` is an ordinary message.
 */
import type { OutgoingMessage } from '../broker.js'

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

/** Reads an entry's fields (`[name, value, name, value, …]`, as buffers). */
export function decodeEntry (stream: string, id: string, fields: readonly unknown[]): StreamEntry {
  let value: Buffer | undefined
  let key: string | undefined
  let headers: Record<string, string> = {}
  const problems: string[] = []
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = text(fields[i])
    const raw = fields[i + 1]
    if (name === DATA_FIELD) value = Buffer.isBuffer(raw) ? raw : Buffer.from(text(raw))
    else if (name === KEY_FIELD) key = text(raw)
    else if (name === HEADERS_FIELD) {
      const parsed = decodeHeaders(text(raw))
      if (parsed === undefined) problems.push('its "headers" field is not a JSON object; headers ignored')
      else headers = parsed
    }
  }
  if (value === undefined) problems.push('it has no "data" field; delivered with an empty body')
  return { stream, id, value: value ?? Buffer.alloc(0), key, headers, problem: problems.length === 0 ? undefined : problems.join('; ') }
}

function decodeHeaders (json: string): Record<string, string> | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return undefined
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined
  const headers: Record<string, string> = {}
  for (const [name, v] of Object.entries(parsed)) {
    if (v === undefined || v === null) continue
    headers[name] = typeof v === 'string' ? v : JSON.stringify(v)
  }
  return headers
}

export function text (value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  return String(value)
}

/** An entry in a reply: `[id, fields]`, where fields are nil for an entry deleted from the stream (Redis < 7). */
export interface RawEntry {
  id: string
  fields: unknown[] | null
}

function rawEntries (list: unknown): RawEntry[] {
  if (!Array.isArray(list)) return []
  const out: RawEntry[] = []
  for (const item of list) {
    if (!Array.isArray(item) || item.length < 1) continue
    out.push({ id: text(item[0]), fields: Array.isArray(item[1]) ? item[1] as unknown[] : null })
  }
  return out
}

/**
 * `XREADGROUP` reply, or nil when the block timed out. RESP2 sends `[[stream, entries], …]`;
 * RESP3 sends a map, which ioredis gives a raw command as a flat `[stream, entries, …]`
 * (its reply transformer applies only to the named `xreadgroup` method).
 */
export function parseReadReply (reply: unknown): Array<{ stream: string, entries: RawEntry[] }> {
  if (!Array.isArray(reply)) return []
  const pairs: unknown[][] = []
  if (reply.length > 0 && !Array.isArray(reply[0])) {
    for (let i = 0; i + 1 < reply.length; i += 2) pairs.push([reply[i], reply[i + 1]])
  } else {
    for (const item of reply) if (Array.isArray(item) && item.length >= 2) pairs.push(item)
  }
  return pairs.map(([stream, entries]) => ({ stream: text(stream), entries: rawEntries(entries) }))
}

/** `XAUTOCLAIM` reply: `[next cursor, [[id, fields], …], [deleted id, …]]` (the third element since Redis 7). */
export function parseAutoclaimReply (reply: unknown): { cursor: string, entries: RawEntry[], deleted: string[] } {
  if (!Array.isArray(reply)) return { cursor: '0-0', entries: [], deleted: [] }
  return {
    cursor: reply[0] === undefined ? '0-0' : text(reply[0]),
    entries: rawEntries(reply[1]),
    deleted: Array.isArray(reply[2]) ? reply[2].map(text) : []
  }
}

/** Extended `XPENDING` reply for one entry: `[[id, consumer, idle ms, delivery count]]`; 0 when not pending. */
export function parseDeliveryCount (reply: unknown): number {
  if (!Array.isArray(reply) || !Array.isArray(reply[0])) return 0
  const count = Number(reply[0][3])
  return Number.isFinite(count) ? count : 0
}

/** What {@link HOLD_SCRIPT} did with an entry. */
export const HOLD_STATE = { notHeld: 0, held: 1, deleted: 2 } as const

/**
 * Acts on entries only while this consumer still holds them (another consumer may have
 * reclaimed one meanwhile; a plain XCLAIM would steal it back). Modes:
 * - `touch`: resets the idle time, so a live consumer keeps what it is working on.
 * - `release`: marks the entry idle since the epoch, so the next XAUTOCLAIM of any
 *   consumer of the group takes it at once, and takes back the delivery count its read or
 *   claim added: a message given back unhandled (a shutdown) has not used up an attempt.
 * - `unread`: the same, for an entry read but never handed over.
 * Replies one state per id: 0 not held, 1 done, 2 the entry was deleted from the stream
 * (Redis 7 then drops it from the pending list).
 */
export const HOLD_SCRIPT = `
local stream, group, consumer, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local states = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, id, id, 1, consumer)[1]
  local state = 0
  if pending then
    local args = { 'XCLAIM', stream, group, consumer, 0, id }
    if mode ~= 'touch' then
      args[#args + 1] = 'TIME'
      args[#args + 1] = 0
    end
    if mode ~= 'touch' and pending[4] > 0 then
      args[#args + 1] = 'RETRYCOUNT'
      args[#args + 1] = pending[4] - 1
    end
    args[#args + 1] = 'JUSTID'
    local claimed = redis.call(unpack(args))
    if #claimed > 0 then state = 1 else state = 2 end
  end
  states[#states + 1] = state
end
return states
`

export type HoldMode = 'touch' | 'release' | 'unread'

/** Error replies Redis gives for a missing group or stream, and for a group that exists. */
export function isNoGroup (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOGROUP')
}

export function isBusyGroup (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('BUSYGROUP')
}

export function isNoScript (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT')
}
