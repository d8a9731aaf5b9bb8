/**
 * The message key travels as the `herald-key` header (AMQP has no key of its own), so it
 * never collides with a header of the user's; every other header is the message's own.
 */
export const KEY_HEADER = 'herald-key'

/** The header a quorum queue adds with the number of earlier deliveries. */
export const DELIVERY_COUNT_HEADER = 'x-delivery-count'

/**
 * Herald's own count of the deliveries of a message that ended without a verdict (the
 * consumer died or lost its channel while holding it). A classic queue counts nothing, so
 * Herald carries the count on the message: a message that comes back `redelivered` is
 * published again to its queue with the count + 1 (see the subscription).
 */
export const REDELIVERIES_HEADER = 'herald-redeliveries'

/**
 * The AMQP headers table of an outgoing message: its headers, plus the key. String values
 * go on the wire as AMQP long strings, which every client reads as text.
 */
export function encodeHeaders (headers: Record<string, string>, key: string | undefined): Record<string, string> {
  // Built without `delete`, which would turn the table into a slow dictionary object that
  // amqplib then encodes for every message.
  const out: Record<string, string> = {}
  for (const name of Object.keys(headers)) {
    // A count copied from a consumed message must not follow it into a new message.
    if (name !== KEY_HEADER && name !== REDELIVERIES_HEADER) out[name] = headers[name]!
  }
  if (key !== undefined) out[KEY_HEADER] = key
  return out
}

/**
 * The headers of a received message as strings, and its key. Other clients send any AMQP
 * field type: byte arrays become UTF-8 text, numbers and booleans their decimal / `true`
 * form, typed values (`{ '!': 'timestamp', value }`) their value, tables and arrays (e.g.
 * `x-death`) JSON. Nothing is dropped except `herald-key`, which becomes the key, and
 * `herald-redeliveries`, which is Herald's bookkeeping; a `key` header (where Herald 0.1
 * put the key) is an ordinary header.
 */
export function decodeHeaders (table: Record<string, unknown> | undefined): { headers: Record<string, string>, key: string | undefined } {
  const headers: Record<string, string> = {}
  let key: string | undefined
  for (const [name, value] of Object.entries(table ?? {})) {
    if (name === KEY_HEADER) {
      key = value === undefined || value === null ? undefined : headerText(value)
      continue
    }
    if (name === REDELIVERIES_HEADER) continue
    headers[name] = headerText(value)
  }
  return { headers, key }
}

/** What a received message says about its earlier deliveries. */
export interface DeliveryCounts {
  /** Herald's count (`herald-redeliveries`), 0 when absent or not a whole number. */
  herald: number
  /** The quorum queue's count (`x-delivery-count`), when the queue keeps one. */
  broker: number | undefined
}

/** Reads both counts from a received message's headers table. */
export function deliveryCounts (table: Record<string, unknown> | undefined): DeliveryCounts {
  return { herald: wholeCount(table?.[REDELIVERIES_HEADER]) ?? 0, broker: wholeCount(table?.[DELIVERY_COUNT_HEADER]) }
}

/**
 * The headers table of a copy of a received message put back on its queue, carrying
 * `redeliveries` as Herald's count (a copy is a new message: a quorum queue counts it
 * from 0 again).
 */
export function withRedeliveries (table: Record<string, unknown> | undefined, redeliveries: number): Record<string, unknown> {
  const out: Record<string, unknown> = { ...table }
  delete out[DELIVERY_COUNT_HEADER]
  out[REDELIVERIES_HEADER] = redeliveries
  return out
}

function wholeCount (value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined
  const count = Number(Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'object' && 'value' in value ? (value as { value: unknown }).value : value)
  return Number.isInteger(count) && count >= 0 ? count : undefined
}

function headerText (value: unknown): string {
  if (typeof value === 'string') return value
  if (value === null || value === undefined) return ''
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (typeof value === 'object' && '!' in value && 'value' in value) return headerText((value as { value: unknown }).value)
  try {
    return JSON.stringify(value, (_k, v: unknown) => {
      if (typeof v === 'bigint') return String(v)
      // A Buffer inside a table has already been turned into { type: 'Buffer', data } by its toJSON.
      if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
        return Buffer.from((v as { data: number[] }).data).toString('utf8')
      }
      return v
    })
  } catch {
    return String(value)
  }
}
