// A raw Kafka consumer reports ready only once its group has given it every partition of
// its topic: a first join may give it none or some (another member of the group, e.g. one
// that has not left yet, holds the rest), and a producer started then would send to
// partitions nobody reads: the round would end with every message lost. Herald's consumer
// likewise resolves `startConsumers` only once its member is assigned
// (lib/brokers/kafka/kafka-subscription.ts), so both are timed from the same point.
import { KAFKA_PARTITIONS } from '../brokers.js'

/**
 * How long to wait for the whole assignment: what Herald's consumer waits for its first
 * (JOIN_TIMEOUT_MS in lib/brokers/kafka/kafka-broker.ts). Long enough for a member that
 * vanished without leaving to be dropped by the group (session timeout: kafkajs 30 s).
 */
export const ASSIGNMENT_TIMEOUT_MS = 60_000

export class AssignmentWait {
  readonly #topic: string
  readonly #group: string
  readonly #partitions: number
  #joins = 0
  #last = 'no join yet'
  #resolve: () => void = () => {}
  #reject: (err: unknown) => void = () => {}
  readonly #done: Promise<void>

  constructor (topic: string, group: string, partitions = KAFKA_PARTITIONS) {
    this.#topic = topic
    this.#group = group
    this.#partitions = partitions
    this.#done = new Promise<void>((resolve, reject) => { this.#resolve = resolve; this.#reject = reject })
    void this.#done.catch(() => {})
  }

  /** Reports one join's assignment to this member (partitions per topic); done once it holds every partition of the topic. */
  joined (partitionsOf: (topic: string) => readonly number[] | undefined): void {
    this.#joins++
    const mine = new Set(partitionsOf(this.#topic) ?? [])
    this.#last = `join ${this.#joins} gave partitions [${[...mine].sort((a, b) => a - b).join(', ')}] of ${this.#partitions}`
    if (Array.from({ length: this.#partitions }, (_, p) => p).every(p => mine.has(p))) this.#resolve()
  }

  /** The consumer stopped for good before it was assigned. */
  failed (err: unknown): void {
    this.#reject(err)
  }

  async wait (timeoutMs = ASSIGNMENT_TIMEOUT_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.#done,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`group "${this.#group}" did not assign this consumer all ${this.#partitions} partitions of ${this.#topic} within ${timeoutMs / 1000} s (${this.#last})`)), timeoutMs)
        })
      ])
    } finally {
      clearTimeout(timer)
    }
  }
}
