// How both raw Kafka producers send: sends made while a request is in flight wait and go
// together in the next one (at most MAX_BATCH), so one request is in flight at a time, as
// with an idempotent producer at maxInFlightRequests 1. Shared, so the two raw Kafka
// contenders differ by their client only.

export interface Outgoing { topic: string, key: string, value: Buffer, headers: Record<string, string> | undefined }

interface Pending extends Outgoing { resolve: () => void, reject: (err: unknown) => void }

const MAX_BATCH = 500

/** Returns a `send` that resolves once `sendBatch` (one produce request, acks=all) has sent the batch its message went in. */
export function coalescing (sendBatch: (batch: Outgoing[]) => Promise<void>): (m: Outgoing) => Promise<void> {
  let queue: Pending[] = []
  let sending = false

  const flush = async (): Promise<void> => {
    if (sending) return
    sending = true
    try {
      while (queue.length > 0) {
        const batch = queue.slice(0, MAX_BATCH)
        queue = queue.slice(batch.length)
        try {
          await sendBatch(batch)
          for (const m of batch) m.resolve()
        } catch (err) {
          for (const m of batch) m.reject(err)
        }
      }
    } finally {
      sending = false
    }
  }

  return async (m) => {
    await new Promise<void>((resolve, reject) => {
      queue.push({ ...m, resolve, reject })
      if (queue.length === 1) setImmediate(() => { void flush() })
    })
  }
}
