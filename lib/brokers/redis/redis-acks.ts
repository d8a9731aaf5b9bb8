import type { Redis } from 'ioredis'
import { BrokerError } from '../../errors.js'

/** The acks of one stream gathered in one tick, answered together. */
interface Batch {
  ids: string[]
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Acknowledges entries in batches: every `ack()` made in one turn of the event loop (all
 * the handlers that finished together) goes out as one `XACK` per stream, pipelined in one
 * write, instead of one round trip per entry. Each `ack()` resolves once Redis answered
 * the `XACK` that carried it, or rejects with that command's error.
 */
export class RedisAcks {
  readonly #client: Redis
  readonly #group: string
  #batches = new Map<string, Batch>()
  #scheduled = false

  constructor (client: Redis, group: string) {
    this.#client = client
    this.#group = group
  }

  async ack (stream: string, id: string): Promise<void> {
    let batch = this.#batches.get(stream)
    if (batch === undefined) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      const done = new Promise<void>((resolve_, reject_) => { resolve = resolve_; reject = reject_ })
      batch = { ids: [], done, resolve, reject }
      this.#batches.set(stream, batch)
    }
    batch.ids.push(id)
    if (!this.#scheduled) {
      this.#scheduled = true
      // After the I/O callbacks of this turn: the handlers settled by the same read or reply all join the batch.
      setImmediate(() => this.#flush())
    }
    await batch.done
  }

  #flush (): void {
    this.#scheduled = false
    const batches = this.#batches
    this.#batches = new Map()
    if (batches.size === 1) {
      const [stream, batch] = [...batches][0]!
      this.#client.call('XACK', stream, this.#group, ...batch.ids).then(() => batch.resolve(), batch.reject)
      return
    }
    const pipeline = this.#client.pipeline()
    for (const [stream, batch] of batches) pipeline.call('XACK', stream, this.#group, ...batch.ids)
    pipeline.exec().then(results => {
      let i = 0
      for (const batch of batches.values()) {
        const result = results?.[i++]
        if (result === undefined) batch.reject(new BrokerError('Redis sent no reply to XACK'))
        else if (result[0] !== null) batch.reject(result[0])
        else batch.resolve()
      }
    }, (err: unknown) => { for (const batch of batches.values()) batch.reject(err) })
  }
}
