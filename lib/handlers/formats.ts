import { isIPv4, isIPv6 } from 'node:net'
import { FormatRegistry, Kind, type TSchema } from '@sinclair/typebox'
import { HandlerError } from '../errors.js'

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/
const TIME = /^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(z|[+-](\d{2}):(\d{2}))$/i
const EMAIL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i
const UUID = /^(?:urn:uuid:)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const HOSTNAME = /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i
// RFC 3986 absolute URI: a scheme, then no character a URI may not carry unescaped.
const URI = /^[a-z][a-z0-9+.-]*:[^\s"<>\\^`{|}]*$/i
const URI_REFERENCE = /^[^\s"<>\\^`{|}]*$/

function isDate (value: string): boolean {
  const m = DATE.exec(value)
  if (m === null) return false
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
  return days !== undefined && day >= 1 && day <= days
}

/** RFC 3339 full-time: the offset is required; 60 seconds for a leap second. */
function isTime (value: string): boolean {
  const m = TIME.exec(value)
  if (m === null) return false
  const offsetOk = m[6] === undefined || (Number(m[6]) <= 23 && Number(m[7]) <= 59)
  return Number(m[1]) <= 23 && Number(m[2]) <= 59 && Number(m[3]) <= 60 && offsetOk
}

function isDateTime (value: string): boolean {
  const parts = value.split(/[Tt ]/)
  return parts.length === 2 && isDate(parts[0]!) && isTime(parts[1]!)
}

function isRegex (value: string): boolean {
  try {
    void new RegExp(value, 'u')
    return true
  } catch {
    return false
  }
}

/** The string formats Herald knows: JSON Schema's common ones. */
export const BUILT_IN_FORMATS: Readonly<Record<string, (value: string) => boolean>> = {
  email: v => v.length <= 254 && EMAIL.test(v),
  uuid: v => UUID.test(v),
  'date-time': isDateTime,
  date: isDate,
  time: isTime,
  uri: v => URI.test(v),
  'uri-reference': v => URI_REFERENCE.test(v),
  ipv4: v => isIPv4(v),
  ipv6: v => isIPv6(v),
  hostname: v => HOSTNAME.test(v),
  regex: isRegex
}

/**
 * Registers Herald's formats in TypeBox's `FormatRegistry`, each only when nothing is
 * registered under its name yet: a format the application registered is never replaced.
 */
export function registerBuiltInFormats (): void {
  for (const [name, check] of Object.entries(BUILT_IN_FORMATS)) {
    if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, check)
  }
}

/** Every `format` a schema uses, with where it is (a schema path such as `properties.email`). */
function formatsOf (schema: unknown, path: string, out: Array<{ format: string, path: string }>, seen: Set<object>): void {
  if (schema === null || typeof schema !== 'object' || seen.has(schema)) return
  seen.add(schema)
  if (Array.isArray(schema)) {
    schema.forEach((item, i) => formatsOf(item, `${path}[${i}]`, out, seen))
    return
  }
  const record = schema as Record<string, unknown> & { [Kind]?: unknown }
  if (record[Kind] === 'String' && typeof record.format === 'string') out.push({ format: record.format, path: path === '' ? '(the root)' : path })
  for (const [key, value] of Object.entries(record)) {
    if (value !== null && typeof value === 'object') formatsOf(value, path === '' ? key : `${path}.${key}`, out, seen)
  }
}

/**
 * Throws a `HandlerError` when a schema uses a format nobody registered: TypeBox would
 * fail every message with "Unknown format", dead-lettering valid ones.
 */
export function checkSchemaFormats (where: string, schema: TSchema): void {
  registerBuiltInFormats()
  const found: Array<{ format: string, path: string }> = []
  formatsOf(schema, '', found, new Set())
  for (const { format, path } of found) {
    if (FormatRegistry.Has(format)) continue
    throw new HandlerError(`${where}: the schema uses the string format "${format}" (at ${path}), which is not registered, so every message would fail validation; ` +
      `register it before startConsumers() with FormatRegistry.Set(${JSON.stringify(format)}, value => /* true when valid */) from @sinclair/typebox, ` +
      `or use one Herald knows: ${Object.keys(BUILT_IN_FORMATS).join(', ')}`)
  }
}
