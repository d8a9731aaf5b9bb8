import { RETRY_HEADERS, type Broker, type Delivery, type OutgoingMessage } from '../brokers/broker.js'
import { headerReason } from './failure-reason.js'

export { RETRY_HEADERS }

/** The attempts a delivery had before it was stored as a retry (0 when it was not). */
export function attemptsBefore (headers: Record<string, string>): number {
  const raw = headers[RETRY_HEADERS.attempt]
  if (raw === undefined || !/^\d{1,9}$/.test(raw)) return 0
  return Math.max(0, Number(raw) - 1)
}

/** The message stored for a retry: body and key unchanged, the headers with the retry headers set. */
export function durableRetryMessage (delivery: Delivery, nextAttempt: number, reason: string, dueAt: number): OutgoingMessage {
  return {
    topic: delivery.topic,
    value: delivery.value,
    key: delivery.key,
    headers: {
      ...delivery.headers,
      [RETRY_HEADERS.attempt]: String(nextAttempt),
      [RETRY_HEADERS.reason]: headerReason(reason),
      [RETRY_HEADERS.retryAt]: new Date(dueAt).toISOString()
    }
  }
}

/** The headers without Herald's retry bookkeeping: a dead letter (and what reads or replays it) starts counting afresh. */
export function withoutRetryHeaders (headers: Record<string, string>): Record<string, string> {
  const out = { ...headers }
  for (const name of Object.values(RETRY_HEADERS)) delete out[name]
  return out
}

/**
 * Hands a retry to the broker when its delay reaches `durableRetryAfter` and the broker
 * can keep it: resolves true once the broker has stored it (the caller then acknowledges
 * the original), false when the retry is to wait in the process (a shorter delay, a
 * broker without `scheduleRetry`, or storing it failed: `onFailed` says why, and nothing
 * is lost, the in-process path takes over).
 */
export async function storeRetry (broker: Broker, group: string, delivery: Delivery, retry: { attempt: number, reason: string, delay: number, after: number }, onFailed: (err: unknown) => void): Promise<boolean> {
  if (retry.delay < retry.after || broker.scheduleRetry === undefined) return false
  const dueAt = Date.now() + retry.delay
  try {
    await broker.scheduleRetry(group, durableRetryMessage(delivery, retry.attempt + 1, retry.reason, dueAt), dueAt)
    return true
  } catch (err) {
    onFailed(err)
    return false
  }
}
