// Consumer lag, read from the brokers when metrics are scraped: each group a running
// runner consumes, through the broker's optional `lag` capability, bounded in time so a
// slow broker never hangs a scrape.
import { BrokerError } from '../errors.js'
import { withTimeout } from '../time.js'
import { consumedGroups } from './registry.js'

/** How long one group's lag may take to read, in ms; a group that takes longer is left out of this scrape. */
const LAG_TIMEOUT_MS = 2_000

export interface GroupLag {
  group: string
  topic: string
  messages: number
}

export async function collectLag (): Promise<GroupLag[]> {
  const reads = [...consumedGroups].map(async ({ messaging, group, topics }) => {
    const broker = await messaging.broker()
    if (broker.lag === undefined) return []
    const lags = await withTimeout(broker.lag(group, topics), LAG_TIMEOUT_MS, () => new BrokerError(`reading the lag of group "${group}" took over ${LAG_TIMEOUT_MS} ms`))
    return lags.map(l => ({ group, topic: l.topic, messages: l.messages }))
  })
  const out: GroupLag[] = []
  for (const r of await Promise.allSettled(reads)) if (r.status === 'fulfilled') out.push(...r.value)
  return out
}
