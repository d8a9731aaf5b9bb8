import { inspect, types } from 'node:util'
import { redactText } from '../redact.js'

const MAX_VALUE = 500
const MAX_CAUSES = 3

const ADVICE = 'throw an Error (or a NonRetriableError) so the reason has a name, a message and a stack'

/**
 * What a failed attempt threw, as the one-line reason that goes into the retry log and
 * the `herald-dlq-reason` header. An Error is `Name: message`, with its causes; anything
 * else (a string, an object, `undefined`, `null`) says what was thrown and that Herald
 * expects an Error. The caller masks secrets.
 */
export function failureReason (thrown: unknown): string {
  if (isError(thrown)) return errorLine(thrown)
  return `the handler threw ${describeValue(thrown)}, not an Error; ${ADVICE}`
}

/** Longest reason kept in a header, in characters: the headers must leave room for the message itself. */
const MAX_HEADER_REASON = 1000

/** A reason as it goes into a header (`herald-dlq-reason`, `herald-retry-reason`): secrets masked, on one line, at most 1000 characters. */
export function headerReason (reason: string): string {
  const clean = redactText(reason).replace(/[\r\n]+/g, ' ')
  return clean.length > MAX_HEADER_REASON ? `${clean.slice(0, MAX_HEADER_REASON)}…` : clean
}

function isError (value: unknown): value is Error {
  return value instanceof Error || types.isNativeError(value)
}

function errorLine (err: Error): string {
  let line = `${err.name}: ${err.message === '' ? '(no message)' : err.message}`
  let cause: unknown = err.cause
  for (let depth = 0; cause !== undefined && depth < MAX_CAUSES; depth++) {
    line += ` (cause: ${isError(cause) ? `${cause.name}: ${cause.message}` : describeValue(cause)})`
    cause = isError(cause) ? cause.cause : undefined
  }
  return line
}

function describeValue (value: unknown): string {
  if (value === undefined) return 'undefined'
  if (value === null) return 'null'
  switch (typeof value) {
    case 'string': return `a string: ${JSON.stringify(clip(value))}`
    case 'number': case 'bigint': case 'boolean': return `a ${typeof value}: ${String(value)}`
    case 'symbol': return `a symbol: ${String(value)}`
    case 'function': return `a function${value.name === '' ? '' : ` (${value.name})`}`
  }
  let text: string
  try {
    text = inspect(value, { depth: 3, breakLength: Infinity, compact: true, maxArrayLength: 20, maxStringLength: MAX_VALUE })
  } catch {
    text = '(a value that cannot be printed)'
  }
  return `${Array.isArray(value) ? 'an array' : 'an object'}: ${clip(text)}`
}

function clip (text: string): string {
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text
}
