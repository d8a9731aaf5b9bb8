import type { Consumer, KafkaMessage } from 'kafkajs'
import type { Logger } from '../../logger.js'
import { sleep } from '../../time.js'
import type { Admin } from 'kafkajs'
import { CommitLedger, decodeMark, encodeMark } from './kafka-commit-ledger.js'
import type { PartitionCommit } from './kafka-commit-rounds.js'
import { kafkaReason } from './kafka-errors.js'
import { PartitionFlow } from './kafka-partition-flow.js'
import { groupRetryTopic } from '../shared/group-destination.js'
import { RETRY_HEADERS } from '../broker.js'

/** One assigned partition: its lanes, its ledger, and what its commits said. */
export class Part {
  readonly tp: string
  readonly flow = new PartitionFlow<KafkaMessage>()
  readonly ledger = new CommitLedger()
  /** Offsets handed over and not settled. */
  readonly inHand = new Set<number>()
  loaded: Promise<void> = Promise.resolve()
  isLoaded = false
  revoked = false
  paused = false
  /** Messages below `suspectUntil` may have been in hand when a worker stopped without settling them: handed over alone (see #pump). */
  suspect = false
  suspectUntil = -1
  /** The lease of the last commit that landed: offsets below it may be handed over (-1: none). */
  leased = -1
  /** The lease the next commit asks for. */
  leaseWanted = -1
  /** The head offset whose delivery a landed commit counted: it may be handed over. */
  markedHead = -1
  /** The head waits for a commit counting its delivery. */
  wantMark = false
  /** An ack moved the offset to commit up to this; -1 once a commit of it (or past it) landed. */
  mustLand = -1
  /** Offset and metadata of the last commit that landed. */
  landed = ''
  /** Asked by the leader to give it back once nothing of it is in hand. */
  handBack = false
  constructor (readonly topic: string, readonly partition: number) { this.tp = `${topic}/${partition}` }

  /**
   * Whether the message at `offset` may be handed over now. Not before a commit landed
   * whose lease covers it; and after a worker died (`suspect`), when it is the lowest
   * unsettled message, not before a commit counted this delivery of it. Then `commit` is
   * called to ask for one. The lease is raised `ahead` at a time, asked for halfway, so in
   * a steady flow no message waits for a commit. Outside `suspect` a delivery is counted by
   * the next commit only: a message that kills its worker at once may have that first
   * death uncounted; it is then below the lease, so every later death is counted.
   */
  mayHandOver (offset: number, ahead: number, commit: () => void): boolean {
    if (offset >= this.leased - ahead / 2 && this.leaseWanted < offset + ahead) {
      this.leaseWanted = offset + ahead
      commit()
    }
    if (offset >= this.leased) return false
    if (this.suspect && offset === this.ledger.head() && this.markedHead !== offset) {
      if (!this.wantMark) {
        this.wantMark = true
        commit()
      }
      return false
    }
    return true
  }
}

/** Pausing, resuming and seeking one partition of a running kafkajs consumer, quietly when it is not running. */
export class PartitionControl {
  readonly #consumer: Consumer
  readonly #topics: string[]
  readonly #logger: Logger
  readonly #secrets: string[]
  readonly #group: string
  readonly #stopping: () => boolean

  constructor (consumer: Consumer, topics: string[], logger: Logger, secrets: string[], group: string, stopping: () => boolean) {
    this.#consumer = consumer
    this.#topics = topics
    this.#logger = logger
    this.#secrets = secrets
    this.#group = group
    this.#stopping = stopping
  }

  pauseAll (): void {
    try {
      this.#consumer.pause(this.#topics.map(topic => ({ topic })))
    } catch {
      // Not running (not started yet, or restarting after a crash): nothing is fetched, and a join pauses again.
    }
  }

  pause (p: Part): void {
    // kafkajs forgets a whole-topic pause when one partition of the topic is paused.
    if (this.#stopping()) return this.pauseAll()
    this.#quietly(p, 'pause', () => this.#consumer.pause([{ topic: p.topic, partitions: [p.partition] }]))
  }

  resume (p: Part): void {
    if (this.#stopping()) return
    this.#quietly(p, 'resume', () => this.#consumer.resume([{ topic: p.topic, partitions: [p.partition] }]))
  }

  seek (p: Part, offset: number): void {
    if (offset >= 0) this.#quietly(p, 'seek', () => this.#consumer.seek({ topic: p.topic, partition: p.partition, offset: String(offset) }))
  }

  #quietly (p: Part, what: string, act: () => void): void {
    try {
      act()
    } catch (err) {
      // Not running: a (re)start fetches from the committed offset, and a join restates pauses.
      this.#logger.debug({ group: this.#group, partition: p.tp, err: kafkaReason(err, this.#secrets) }, `could not ${what} a Kafka partition`)
    }
  }
}

/**
 * Reads what the group's last commits said of partitions just assigned (delivery counts,
 * acked offsets, lease) into their ledgers; resolves with those holding messages that may
 * have been in hand when a worker stopped without settling them (below the lease, and below
 * the partition's end: a message handed over was below it). Tries three times, then goes on without.
 */
export async function readMarks (admin: Admin, groupId: string, parts: Part[], failed: (err: unknown) => void): Promise<Part[]> {
  const topics = [...new Set(parts.map(p => p.topic))]
  const suspects: Part[] = []
  for (let attempt = 1; ; attempt++) {
    try {
      const ends = new Map<string, number>()
      for (const topic of topics) for (const { partition, high } of await admin.fetchTopicOffsets(topic)) ends.set(`${topic}/${partition}`, Number(high))
      for (const { topic, partitions } of await admin.fetchOffsets({ groupId, topics })) {
        for (const { partition, offset, metadata } of partitions) {
          const p = parts.find(x => x.topic === topic && x.partition === partition)
          if (p === undefined) continue
          const committed = Number(offset)
          const mark = decodeMark(metadata, committed)
          p.ledger.recover(committed, mark)
          p.landed = mark === undefined ? '' : `${committed}|${metadata ?? ''}`
          if (mark === undefined) continue
          p.leased = mark.lease ?? -1
          p.suspectUntil = Math.min(Math.max(mark.lease ?? -1, mark.deliveries > 0 ? committed + 1 : -1), ends.get(p.tp) ?? Infinity)
          if (p.suspectUntil > committed) {
            p.suspect = true
            suspects.push(p)
          }
        }
      }
      break
    } catch (err) {
      if (attempt >= 3) {
        failed(err)
        break
      }
      await sleep(200 * attempt)
    }
  }
  for (const p of parts) p.isLoaded = true
  return suspects
}

/**
 * What the next commit round sends: each partition whose head, count, acked offsets or
 * lease changed, and what to note once it landed. The lease only grows, so that whatever
 * was handed over under the last landed one stays below the one landing next; a partition
 * with nothing in hand that hands nothing more over (stopping, handed back) drops it.
 */
export function collectCommits (parts: Iterable<Part>, abandoned: boolean, stopping: boolean, onLanded: () => void): { offsets: PartitionCommit[], landed: () => void } {
  const offsets: PartitionCommit[] = []
  const notes: Array<() => void> = []
  if (abandoned) return { offsets, landed: () => {} }
  for (const p of parts) {
    if (!p.isLoaded) continue
    const head = p.ledger.head()
    // The head counts one delivery more when it is in hand, or about to be (it waits for this
    // commit, or an earlier one counted it and it has not gone yet: a later round must not undo that).
    const counted = head !== undefined && (p.inHand.has(head) || ((p.wantMark || p.markedHead === head) && !stopping))
    const idle = p.inHand.size === 0 && (stopping || p.handBack)
    if (idle) p.leased = -1
    const lease = idle ? undefined : Math.max(p.leased, p.leaseWanted)
    const mark = p.ledger.mark(counted, lease)
    if (mark === undefined) continue
    const metadata = encodeMark(mark)
    const key = `${mark.offset}|${metadata}`
    if (key === p.landed) {
      if (mark.offset >= p.mustLand) p.mustLand = -1
      continue
    }
    offsets.push({ topic: p.topic, partition: p.partition, offset: String(mark.offset), metadata })
    notes.push(() => {
      p.landed = key
      if (counted) p.markedHead = mark.offset
      if (p.markedHead === mark.offset) p.wantMark = false
      if (lease !== undefined && lease > p.leased) p.leased = lease
      if (mark.offset >= p.mustLand) p.mustLand = -1
    })
  }
  return { offsets, landed: () => { onLanded(); for (const note of notes) note() } }
}

/**
 * Holds back the messages of a group's retry topics (`<topic>.<group>.retry`) until their
 * `herald-retry-at`: a message not due yet is not handed over (it stays fetched, not in
 * hand, so neither its delivery nor a crash counts), and with it the rest of its partition,
 * whose fetching pauses as its buffer fills. `wake` is called when the earliest one held
 * back is due, so the subscription hands over again. After a worker died, a partition whose
 * next message is a retry not due yet is let go of as a suspect (KafkaSubscription#pump):
 * its messages would otherwise run alone only once it is due, stalling the others until
 * then; the price is that a message of that retry topic that was in hand when the worker
 * died may be delivered once more before its death is counted.
 */
export class DueGate {
  readonly #options: () => { topics: readonly string[], group: string }
  readonly #wake: () => void
  #retryTopics: Set<string> | undefined
  #timer: NodeJS.Timeout | undefined
  #at = Number.POSITIVE_INFINITY

  /** `options`: the subscription's topics (retry topics included) and group, read on first use. */
  constructor (options: () => { topics: readonly string[], group: string }, wake: () => void) {
    this.#options = options
    this.#wake = wake
  }

  /** True when `message` of `topic` is a retry not due yet (then a timer wakes the subscription when it is). */
  notYet (topic: string, message: KafkaMessage | undefined): boolean {
    if (message === undefined) return false
    if (this.#retryTopics === undefined) {
      const { topics, group } = this.#options()
      this.#retryTopics = new Set(topics.map(t => groupRetryTopic(t, group)))
    }
    if (!this.#retryTopics.has(topic)) return false
    const raw = message.headers?.[RETRY_HEADERS.retryAt]
    const at = Date.parse(String(Array.isArray(raw) ? raw[0] : raw))
    const now = Date.now()
    if (!Number.isFinite(at) || at <= now) return false
    if (at < this.#at) {
      clearTimeout(this.#timer)
      this.#at = at
      this.#timer = setTimeout(() => {
        this.#at = Number.POSITIVE_INFINITY
        this.#wake()
      }, at - now)
      // After the subscription closed, waking it does nothing: the timer need not be stopped, nor keep the process alive.
      this.#timer.unref()
    }
    return true
  }
}
