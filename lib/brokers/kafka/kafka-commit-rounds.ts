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
 * How long a commit asked for by acks alone may wait for more acks (ms). Nothing waits for
 * such a commit but the ack's promise (the message's key, slot and room are free once it
 * is acked), and each commit is a request the client and the broker pay for: without the
 * wait a steady flow commits once per fetch, a third of all requests at 500 msg/s. Commits
 * something waits for (a lease, a delivery count, a stop) go at once and take the acks
 * along. A worker that dies gets up to this much of its acks delivered again (at least once).
 */
export const ACK_COMMIT_DELAY_MS = 10

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
  /** When the next round is to start (`performance.now()` ms); +Infinity when none is asked for. */
  #due = Number.POSITIVE_INFINITY
  /** Cancels the scheduled start of the next round. */
  #cancel: (() => void) | undefined
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
    return this.#ask(0)
  }

  /** As `soon`, but the commit may start up to `delayMs` later, gathering the acks of that time (ACK_COMMIT_DELAY_MS). */
  later (delayMs: number): Promise<void> {
    return this.#ask(delayMs)
  }

  #ask (delayMs: number): Promise<void> {
    if (this.#next === undefined) {
      let resolve: () => void = () => {}
      const promise = new Promise<void>(r => { resolve = r })
      this.#next = { promise, resolve }
    }
    const due = performance.now() + delayMs
    if (due < this.#due) {
      this.#due = due
      // A running loop starts the round itself once the current one is done.
      if (!this.#running) this.#schedule()
    }
    return this.#next.promise
  }

  /** Starts the loop when the next round is due: after the current tick (its acks join), or at its time. */
  #schedule (): void {
    this.#cancel?.()
    const start = (): void => { this.#cancel = undefined; void this.#run() }
    const wait = this.#due - performance.now()
    if (wait <= 0) {
      const immediate = setImmediate(start)
      this.#cancel = () => clearImmediate(immediate)
    } else {
      const timer = setTimeout(start, Math.ceil(wait))
      this.#cancel = () => clearTimeout(timer)
    }
  }

  async #run (): Promise<void> {
    if (this.#running) return
    this.#running = true
    try {
      while (this.#next !== undefined) {
        if (this.#due > performance.now()) {
          this.#schedule()
          break
        }
        const round = this.#next
        this.#next = undefined
        this.#due = Number.POSITIVE_INFINITY
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
