/**
 * The message key travels as the `herald-key` header (AMQP has no key of its own), so it
 * never collides with a header of the user's; every other header is the message's own.
 */
export const KEY_HEADER = 'herald-key'

/** The header a quorum queue adds with the number of earlier deliveries. */
export const DELIVERY_COUNT_HEADER = 'x-delivery-count'

/**
 * The AMQP headers table of an outgoing message: its headers, plus the key. String values
 * go on the wire as AMQP long strings, which every client reads as text.
 */
export function encodeHeaders (headers: Record<string, string>, key: string | undefined): Record<string, string> {
  const out: Record<string, string> = { ...headers }
  if (key !== undefined) out[KEY_HEADER] = key
  else delete out[KEY_HEADER]
  return out
}

/**
 * The headers of a received message as strings, and its key. Other clients send any AMQP
 * field type: byte arrays become UTF-8 text, numbers and booleans their decimal / `true`
 * form, typed values (`{ '!': 'timestamp', value }`) their value, tables and arrays (e.g.
 * `x-death`) JSON. Nothing is dropped except `herald-key`, which becomes the key; a
 * `key` header (where Herald 0.1 put the key) is an ordinary header.
 */
export function decodeHeaders (table: Record<string, unknown> | undefined): { headers: Record<string, string>, key: string | undefined } {
  const headers: Record<string, string> = {}
  let key: string | undefined
  for (const [name, value] of Object.entries(table ?? {})) {
    if (name === KEY_HEADER) {
      key = value === undefined || value === null ? undefined : headerText(value)
      continue
    }
    headers[name] = headerText(value)
  }
  return { headers, key }
}

/** How many times the message was delivered before, as far as RabbitMQ tells. */
export function redeliveriesOf (redelivered: boolean, table: Record<string, unknown> | undefined): number {
  const count = Number(table?.[DELIVERY_COUNT_HEADER])
  const counted = Number.isInteger(count) && count > 0 ? count : 0
  return Math.max(counted, redelivered ? 1 : 0)
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
