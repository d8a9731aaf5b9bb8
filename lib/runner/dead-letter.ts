import type { Delivery, OutgoingMessage } from '../brokers/broker.js'
import type { RetryPolicy } from '../handlers/handler.js'
import { redactText } from '../redact.js'

/** Headers added to a dead-lettered message; the body, key and other headers stay as they were. */
export const DLQ_HEADERS = {
  reason: 'herald-dlq-reason',
  topic: 'herald-dlq-topic',
  group: 'herald-dlq-group',
  attempts: 'herald-dlq-attempts',
  failedAt: 'herald-dlq-failed-at',
  /** `true` on a dead letter whose body is a pointer to the original message (it could not be stored whole). */
  truncated: 'herald-dlq-truncated'
} as const

/** Longest reason kept, in characters: the headers must leave room for the message itself. */
const MAX_REASON = 1000

/** Where a message of `topic` consumed by `group` goes after its last attempt; false: nowhere. */
export function deadLetterTopic (topic: string, group: string, policy: Pick<RetryPolicy, 'deadLetter'>): string | false {
  if (policy.deadLetter === false) return false
  return policy.deadLetter ?? `${topic}.${group}.dlq`
}

/** The dead letter for a delivery: the message unchanged, plus the `herald-dlq-*` headers. */
export function deadLetterMessage (delivery: Delivery, destination: string, group: string, attempts: number, reason: string): OutgoingMessage {
  const clean = redactText(reason).replace(/[\r\n]+/g, ' ')
  return {
    topic: destination,
    value: delivery.value,
    key: delivery.key,
    headers: {
      ...delivery.headers,
      [DLQ_HEADERS.reason]: clean.length > MAX_REASON ? `${clean.slice(0, MAX_REASON)}…` : clean,
      [DLQ_HEADERS.topic]: delivery.topic,
      [DLQ_HEADERS.group]: group,
      [DLQ_HEADERS.attempts]: String(attempts),
      [DLQ_HEADERS.failedAt]: new Date().toISOString()
    }
  }
}

/**
 * The dead letter stored when the whole one cannot be (over the destination's size limit,
 * refused): the body is a JSON pointer to the original (`topic`, `id`: where it still is,
 * as long as the broker retains it), with the `herald-dlq-*` headers and
 * `herald-dlq-truncated: true`; the original headers and key stay out, so it always fits.
 */
export function truncatedDeadLetter (delivery: Delivery, destination: string, group: string, attempts: number, reason: string): OutgoingMessage {
  const full = deadLetterMessage(delivery, destination, group, attempts, reason)
  const headers: Record<string, string> = { [DLQ_HEADERS.truncated]: 'true' }
  for (const name of Object.values(DLQ_HEADERS)) if (full.headers[name] !== undefined) headers[name] = full.headers[name]
  const body = { truncated: true, topic: delivery.topic, id: delivery.id, bytes: delivery.value.length, eventId: delivery.headers['event-id'] }
  return { topic: destination, value: Buffer.from(JSON.stringify(body)), key: undefined, headers }
}
