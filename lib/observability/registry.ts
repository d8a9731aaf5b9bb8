// What metrics read at scrape time: the Messaging instances alive in the process (their
// outbox) and the groups their runners consume (their lag). Filled by Messaging and
// startConsumers, emptied when they close and stop.
import type { Broker } from '../brokers/broker.js'
import type { OutboxStats } from '../outbox/outbox.js'

/** The part of a Messaging instance metrics read. */
export interface ObservedMessaging {
  readonly outbox: OutboxStats | undefined
  broker(): Promise<Broker>
}

export const liveMessaging = new Set<ObservedMessaging>()

/** One group a running runner consumes. */
export interface ConsumedGroup {
  readonly messaging: ObservedMessaging
  readonly group: string
  readonly topics: readonly string[]
}

export const consumedGroups = new Set<ConsumedGroup>()

/** The sum over the outboxes of the live Messaging instances of `pick` (with `max`: the largest). */
export function outboxTotal (pick: (outbox: OutboxStats) => number, max = false): number {
  let value = 0
  for (const m of liveMessaging) {
    const o = m.outbox
    if (o !== undefined) value = max ? Math.max(value, pick(o)) : value + pick(o)
  }
  return value
}
