import type { Consumer, KafkaMessage } from 'kafkajs'
import type { Logger } from '../../logger.js'
import { sleep } from '../../time.js'
import type { Admin } from 'kafkajs'
import { CommitLedger, decodeMark, encodeMark } from './kafka-commit-ledger.js'
import type { PartitionCommit } from './kafka-commit-rounds.js'
import { kafkaReason } from './kafka-errors.js'
import { PartitionFlow } from './kafka-partition-flow.js'

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
  /** Its head was in hand when a worker stopped without settling it: handed over alone (see #pump). */
  suspect = false
  /** The head offset whose delivery a landed commit counted: it may be handed over. */
  markedHead = -1
  /** The head waits for a commit counting its delivery. */
  wantMark = false
  /** Offset and metadata of the last commit that landed. */
  landed = ''
  /** Asked by the leader to give it back once nothing of it is in hand. */
  handBack = false
  constructor (readonly topic: string, readonly partition: number) { this.tp = `${topic}/${partition}` }
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
 * acked offsets) into their ledgers; resolves with those whose lowest message was in hand
 * when a worker stopped without settling it. Tries three times, then goes on without.
 */
export async function readMarks (admin: Admin, groupId: string, parts: Part[], failed: (err: unknown) => void): Promise<Part[]> {
  const topics = [...new Set(parts.map(p => p.topic))]
  const suspects: Part[] = []
  for (let attempt = 1; ; attempt++) {
    try {
      for (const { topic, partitions } of await admin.fetchOffsets({ groupId, topics })) {
        for (const { partition, offset, metadata } of partitions) {
          const p = parts.find(x => x.topic === topic && x.partition === partition)
          if (p === undefined) continue
          const committed = Number(offset)
          const mark = decodeMark(metadata, committed)
          p.ledger.recover(committed, mark)
          p.landed = mark === undefined ? '' : `${committed}|${metadata ?? ''}`
          if (mark !== undefined && mark.deliveries > 0) {
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

/** What the next commit round sends: each partition whose head, count or acked offsets changed, and what to note once it landed. */
export function collectCommits (parts: Iterable<Part>, abandoned: boolean, stopping: boolean, onLanded: () => void): { offsets: PartitionCommit[], landed: () => void } {
  const offsets: PartitionCommit[] = []
  const notes: Array<() => void> = []
  if (abandoned) return { offsets, landed: () => {} }
  for (const p of parts) {
    if (!p.isLoaded) continue
    const head = p.ledger.head()
    // The head counts one delivery more when it is in hand, or about to be (it waits for this commit).
    const counted = head !== undefined && (p.inHand.has(head) || (p.wantMark && !stopping))
    const mark = p.ledger.mark(counted)
    if (mark === undefined) continue
    const metadata = encodeMark(mark)
    const key = `${mark.offset}|${metadata}`
    if (key === p.landed) continue
    offsets.push({ topic: p.topic, partition: p.partition, offset: String(mark.offset), metadata })
    notes.push(() => {
      p.landed = key
      if (counted) p.markedHead = mark.offset
      if (p.markedHead === mark.offset) p.wantMark = false
    })
  }
  return { offsets, landed: () => { onLanded(); for (const note of notes) note() } }
}
