// What the Fastify plugin and the Express middleware have in common: which Messaging
// instance to use, how a reply body becomes an event's result, and how a reply whose
// events failed is answered (503 to retry, 500 for a bug).
import type { EventOutcome, RouteEventsFailure } from '../lib/emit.js'
import { ConfigError, HeraldError } from '../lib/errors.js'
import { checkKnownKeys } from '../lib/brokers/config-checks.js'
import { createMessaging, MESSAGING_OPTION_KEYS, type Messaging, type MessagingOptions } from '../lib/messaging.js'
import { redactText } from '../lib/redact.js'
import { healthPaths, type HealthOption, type HealthPaths } from './health.js'

/** Options of both integrations: the messaging options, or `messaging` to use an instance you own. */
export type IntegrationOptions = MessagingOptions & {
  /** Use this instance instead of creating one. It is closed only if `closeMessaging` is true. */
  messaging?: Messaging
  /** Close the `messaging` passed in when the app closes. Default false. */
  closeMessaging?: boolean
  /** Serve liveness and readiness probes: `true` for `/livez` and `/readyz`, or `{ livez, readyz }` paths (`false` leaves one out). */
  health?: HealthOption
}

/** The instance to use and whether the integration owns (and so closes) it. */
export function messagingFrom (options: IntegrationOptions): { messaging: Messaging, owned: boolean, health: HealthPaths | undefined } {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', 'must be an object like { broker: "redis" }')
  // A typo of the integration's own options is named too, not only the messaging ones.
  checkKnownKeys('', options, [...MESSAGING_OPTION_KEYS, 'messaging', 'closeMessaging', 'health'])
  const { messaging, closeMessaging, health: healthOption, ...messagingOptions } = options
  const health = healthPaths(healthOption)
  if (closeMessaging !== undefined && typeof closeMessaging !== 'boolean') {
    throw new ConfigError('closeMessaging', `must be true or false, got ${JSON.stringify(closeMessaging)}`)
  }
  if (messaging === undefined) return { messaging: createMessaging(messagingOptions), owned: true, health }
  if (messaging === null || typeof messaging !== 'object' || typeof messaging.publishEvent !== 'function') {
    throw new ConfigError('messaging', 'must be a Messaging instance from createMessaging(); pass messaging options (broker, url, …) directly instead')
  }
  const ignored = Object.keys(messagingOptions)
  if (ignored.length > 0) {
    throw new ConfigError(ignored[0]!, `cannot be given with \`messaging\`: the instance passed in already has its options; remove ${ignored.map(k => `"${k}"`).join(', ')} or \`messaging\``)
  }
  return { messaging, owned: closeMessaging === true, health }
}

export const isSuccess = (status: number): boolean => status >= 200 && status < 300

export function isJsonType (contentType: unknown): boolean {
  return typeof contentType === 'string' && /^application\/([\w.-]+\+)?json\s*(;|$)/i.test(contentType)
}

/** A body as text, when it is text: a string, or a Buffer of JSON or `text/*`. */
export function bodyText (body: unknown, contentType: unknown): string | undefined {
  if (typeof body === 'string') return body
  if (Buffer.isBuffer(body) && (isJsonType(contentType) || (typeof contentType === 'string' && contentType.startsWith('text/')))) return body.toString('utf8')
  return undefined
}

/** The event result of a body's text: JSON parsed back when it is JSON, else the text. */
export function resultOfText (text: string, contentType: unknown): unknown {
  if (!isJsonType(contentType)) return text
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** One event in the body of a 503: whether it was published, so the client knows what a retry sends again. */
export interface EventStatus { name: string, topic: string, published: boolean }

/** The body of the 503 a client gets when events of its request were not acknowledged. */
export interface UnpublishedBody {
  statusCode: 503
  error: 'Service Unavailable'
  message: string
  /** The (first) event that was not published. */
  event: string
  /** Every event of the reply, published or not. */
  events: EventStatus[]
}

const quoted = (names: string[]): string => names.map(n => `"${n}"`).join(', ')

/** The body of the 503 a client gets when events of its request were not acknowledged. */
export function unpublishedEventBody (events: readonly EventOutcome[]): UnpublishedBody {
  const failed = events.filter(e => !e.published).map(e => e.name)
  const done = events.filter(e => e.published).map(e => e.name)
  const also = done.length === 0 ? '' : `; ${quoted(done)} ${done.length === 1 ? 'was' : 'were'} published (a retry publishes ${done.length === 1 ? 'it' : 'them'} again)`
  return {
    statusCode: 503,
    error: 'Service Unavailable',
    message: `event ${quoted(failed)} could not be published (the broker did not acknowledge it), so the request is reported as failed; retry the request${also}`,
    event: failed[0]!,
    events: events.map(e => ({ name: e.name, topic: e.topic, published: e.published }))
  }
}

const reasonOf = (err: unknown): string => redactText(err instanceof Error ? err.message : String(err))

/** How a reply whose events failed is answered: 503 (retry) or a 500 (a bug), with what to log. */
export type FailureAnswer =
  | { status: 503, body: UnpublishedBody, fields: Record<string, unknown>, message: string }
  | { status: 500, error: HeraldError, fields: Record<string, unknown>, message: string }

/**
 * The answer to a reply whose events were not all published. Only a broker failure that
 * may pass (`isRetriable`) is a 503 telling the client to retry; an event that cannot be
 * built (mapper threw, data not JSON, over maxMessageBytes, keyField missing) or that the
 * broker refuses for good is a bug of the server: a 500, logged with the route and event.
 */
export function answerForFailure (failure: RouteEventsFailure, route: string): FailureAnswer {
  if (failure.stage === 'build') {
    const error = failure.error instanceof HeraldError ? failure.error : new HeraldError(reasonOf(failure.error), { cause: failure.error })
    return {
      status: 500,
      error: new HeraldError(`route ${route}: ${reasonOf(error)}`, { code: error.code, cause: failure.error }),
      fields: { route, event: failure.name, topic: failure.topic, code: error.code, reason: reasonOf(error) },
      message: 'herald: the route\'s event could not be built, so nothing was published; replying 500 (a bug in the route or its data)'
    }
  }
  const failed = failure.events.filter(e => !e.published)
  const first = failed[0]!
  const fields = {
    route,
    event: first.name,
    topic: first.topic,
    code: first.error instanceof HeraldError ? first.error.code : undefined,
    reason: reasonOf(first.error),
    events: failure.events.map(e => ({ name: e.name, topic: e.topic, published: e.published, ...(e.published ? {} : { reason: reasonOf(e.error) }) }))
  }
  if (failure.retriable) {
    return { status: 503, body: unpublishedEventBody(failure.events), fields, message: 'herald: the route\'s event was not published; replying 503' }
  }
  const published = failure.events.filter(e => e.published).map(e => e.name)
  return {
    status: 500,
    error: new HeraldError(`route ${route}: event ${quoted(failed.map(e => e.name))} was refused by the broker for good (${reasonOf(first.error)})${published.length === 0 ? '' : `; ${quoted(published)} published`}`, { code: 'HERALD_PUBLISH', cause: first.error }),
    fields,
    message: 'herald: the broker refused the route\'s event for a reason a retry cannot fix; replying 500'
  }
}
