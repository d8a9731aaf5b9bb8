import type { Delivery, OutgoingMessage } from '../brokers/broker.js'
import type { RetryPolicy } from '../handlers/handler.js'
import { headerReason } from './failure-reason.js'
import { withoutRetryHeaders } from './durable-retry.js'

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

/**
 * When a dead letter is itself dead-lettered (its reader failed it), the first letter's
 * reason, topic, group, attempts and time, kept here while `herald-dlq-*` describe the
 * latest failure: the original failure is never lost, however many times it moves on.
 */
export const DLQ_ORIGINAL_HEADERS = {
  reason: 'herald-dlq-original-reason',
  topic: 'herald-dlq-original-topic',
  group: 'herald-dlq-original-group',
  attempts: 'herald-dlq-original-attempts',
  failedAt: 'herald-dlq-original-failed-at'
} as const

/** Where a message of `topic` consumed by `group` goes after its last attempt; false: nowhere. */
export function deadLetterTopic (topic: string, group: string, policy: Pick<RetryPolicy, 'deadLetter'>): string | false {
  if (policy.deadLetter === false) return false
  return policy.deadLetter ?? `${topic}.${group}.dlq`
}

/** The dead letter for a delivery: the message unchanged, plus the `herald-dlq-*` headers (and `herald-dlq-original-*` when it was a dead letter already). */
export function deadLetterMessage (delivery: Delivery, destination: string, group: string, attempts: number, reason: string): OutgoingMessage {
  return {
    topic: destination,
    value: delivery.value,
    key: delivery.key,
    headers: {
      ...withoutRetryHeaders(delivery.headers),
      [DLQ_HEADERS.reason]: headerReason(reason),
      [DLQ_HEADERS.topic]: delivery.topic,
      [DLQ_HEADERS.group]: group,
      [DLQ_HEADERS.attempts]: String(attempts),
      [DLQ_HEADERS.failedAt]: new Date().toISOString(),
      ...originalFailure(delivery.headers)
    }
  }
}

/** The first failure of a message that was already a dead letter: its `herald-dlq-original-*` values, else its `herald-dlq-*` ones. */
function originalFailure (headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers[DLQ_ORIGINAL_HEADERS.reason] === undefined && headers[DLQ_HEADERS.reason] === undefined) return out
  for (const field of Object.keys(DLQ_ORIGINAL_HEADERS) as Array<keyof typeof DLQ_ORIGINAL_HEADERS>) {
    const first = headers[DLQ_ORIGINAL_HEADERS[field]] ?? headers[DLQ_HEADERS[field]]
    if (first !== undefined) out[DLQ_ORIGINAL_HEADERS[field]] = first
  }
  return out
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
  for (const name of [...Object.values(DLQ_HEADERS), ...Object.values(DLQ_ORIGINAL_HEADERS)]) if (full.headers[name] !== undefined) headers[name] = full.headers[name]
  const body = { truncated: true, topic: delivery.topic, id: delivery.id, bytes: delivery.value.length, eventId: delivery.headers['event-id'] }
  return { topic: destination, value: Buffer.from(JSON.stringify(body)), key: undefined, headers }
}
