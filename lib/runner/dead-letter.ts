import type { Delivery, OutgoingMessage } from '../brokers/broker.js'
import type { RetryPolicy } from '../handlers/handler.js'
import { redactText } from '../redact.js'

/** Headers added to a dead-lettered message; the body, key and other headers stay as they were. */
export const DLQ_HEADERS = {
  reason: 'herald-dlq-reason',
  topic: 'herald-dlq-topic',
  group: 'herald-dlq-group',
  attempts: 'herald-dlq-attempts',
  failedAt: 'herald-dlq-failed-at'
} as const

const MAX_REASON = 2000

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
