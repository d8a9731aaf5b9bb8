import { BrokerError } from '../../errors.js'
import { withTimeout } from '../../time.js'

/**
 * How long an ack waits for its commit (ms). kafkajs retries a commit until Kafka answers,
 * which during an outage is without end; past this the ack resolves and the commit is made
 * again once Kafka answers, so that a stop is not held up.
 */
export const COMMIT_WAIT_MS = 5_000

export interface PartitionCommit {
  topic: string
  partition: number
  offset: string
  metadata: string
}

/**
 * Coalesced commits: every ack of one tick waits for the same commit, one commit request
 * at a time for the whole subscription (all its partitions), and the next gathers what
 * was acked meanwhile. So a busy partition costs one commit round trip per round, not per
 * message.
 */
export class CommitRounds {
  readonly #collect: () => { offsets: PartitionCommit[], landed: () => void }
  readonly #commit: (offsets: PartitionCommit[]) => Promise<void>
  readonly #failed: (err: unknown) => void
  readonly #after: () => void
  #next: { promise: Promise<void>, resolve: () => void } | undefined
  #running = false

  /**
   * `collect`: what to commit now, and what to note once it landed; `commit`: the request;
   * `failed`: a commit that failed or got no answer in time (the next round makes it again);
   * `after`: called after each round (gated messages may go now).
   */
  constructor (collect: () => { offsets: PartitionCommit[], landed: () => void }, commit: (offsets: PartitionCommit[]) => Promise<void>, failed: (err: unknown) => void, after: () => void) {
    this.#collect = collect
    this.#commit = commit
    this.#failed = failed
    this.#after = after
  }

  /** Resolves once a commit that starts after this call has landed, failed or timed out. Never rejects. */
  soon (): Promise<void> {
    if (this.#next === undefined) {
      let resolve: () => void = () => {}
      const promise = new Promise<void>(r => { resolve = r })
      this.#next = { promise, resolve }
      if (!this.#running) setImmediate(() => { void this.#run() })
    }
    return this.#next.promise
  }

  async #run (): Promise<void> {
    if (this.#running) return
    this.#running = true
    try {
      while (this.#next !== undefined) {
        const round = this.#next
        this.#next = undefined
        const { offsets, landed } = this.#collect()
        if (offsets.length > 0) {
          const request = this.#commit(offsets)
          try {
            await withTimeout(request, COMMIT_WAIT_MS, () => new BrokerError('no answer from Kafka to the offset commit', { retriable: true }))
            landed()
          } catch (err) {
            this.#failed(err)
            round.resolve()
            // One request at a time: a commit still retried by kafkajs finishes (or fails) before the next.
            await request.catch(() => {})
          }
        }
        round.resolve()
        this.#after()
      }
    } finally {
      this.#running = false
    }
  }
}
