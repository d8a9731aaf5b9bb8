// What the Fastify plugin and the Express middleware have in common: which Messaging
// instance to use, how a reply body becomes an event's result, and the 503 a client
// gets when an event was not acknowledged.
import type { EventConfig } from '../lib/emit.js'
import { ConfigError, HeraldError, PublishError } from '../lib/errors.js'
import { checkKnownKeys } from '../lib/brokers/config-checks.js'
import { createMessaging, MESSAGING_OPTION_KEYS, type Messaging, type MessagingOptions } from '../lib/messaging.js'
import { redactText } from '../lib/redact.js'

/** Options of both integrations: the messaging options, or `messaging` to use an instance you own. */
export type IntegrationOptions = MessagingOptions & {
  /** Use this instance instead of creating one. It is closed only if `closeMessaging` is true. */
  messaging?: Messaging
  /** Close the `messaging` passed in when the app closes. Default false. */
  closeMessaging?: boolean
}

/** The instance to use and whether the integration owns (and so closes) it. */
export function messagingFrom (options: IntegrationOptions): { messaging: Messaging, owned: boolean } {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', 'must be an object like { broker: "redis" }')
  // A typo of the integration's own options is named too, not only the messaging ones.
  checkKnownKeys('', options, [...MESSAGING_OPTION_KEYS, 'messaging', 'closeMessaging'])
  const { messaging, closeMessaging, ...messagingOptions } = options
  if (closeMessaging !== undefined && typeof closeMessaging !== 'boolean') {
    throw new ConfigError('closeMessaging', `must be true or false, got ${JSON.stringify(closeMessaging)}`)
  }
  if (messaging === undefined) return { messaging: createMessaging(messagingOptions), owned: true }
  if (messaging === null || typeof messaging !== 'object' || typeof messaging.publishEvent !== 'function') {
    throw new ConfigError('messaging', 'must be a Messaging instance from createMessaging(); pass messaging options (broker, url, …) directly instead')
  }
  const ignored = Object.keys(messagingOptions)
  if (ignored.length > 0) {
    throw new ConfigError(ignored[0]!, `cannot be given with \`messaging\`: the instance passed in already has its options; remove ${ignored.map(k => `"${k}"`).join(', ')} or \`messaging\``)
  }
  return { messaging, owned: closeMessaging === true }
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

/** The body of the 503 a client gets when an event of its request was not acknowledged. */
export function unpublishedEventBody (eventName: string): { statusCode: 503, error: 'Service Unavailable', message: string, event: string } {
  return {
    statusCode: 503,
    error: 'Service Unavailable',
    message: `event "${eventName}" could not be published (the broker did not acknowledge it), so the request is reported as failed; retry the request`,
    event: eventName
  }
}

/** The event a publish failure is about, and the secret-free fields to log it with. */
export function describePublishFailure (err: unknown, configs: readonly EventConfig[]): { eventName: string, fields: Record<string, unknown> } {
  const eventName = err instanceof PublishError && err.eventName !== undefined ? err.eventName : configs.map(c => c.name).join(', ')
  return {
    eventName,
    fields: {
      event: eventName,
      topic: err instanceof PublishError ? err.topic : undefined,
      code: err instanceof HeraldError ? err.code : undefined,
      reason: redactText(err instanceof Error ? err.message : String(err))
    }
  }
}
