/**
 * What one partition's offset commit says, kept apart from kafkajs so it can be reasoned
 * about (and tested) alone.
 *
 * The offset committed is always the lowest one not settled (fetched and not acked:
 * waiting in a lane, handed over, or released), never past it. Its metadata carries what
 * Kafka does not count by itself (issue 7, point 13):
 * - `deliveries`: how many times the message at that offset was handed over without being
 *   settled (a worker that died, however it died, holding it). The first delivery after a
 *   restart reports it as `redeliveries`, and the runner dead-letters a message whose
 *   deliveries are spent without running it again. A release (a shutdown) counts nothing.
 * - `acked`: offsets above it already acked (ranges relative to it), so that a restart
 *   does not deliver again what was handled while an earlier message was still running.
 * - `lease`: the end (exclusive) of what may be in hand until the next commit lands: no
 *   offset at or past it is handed over before a commit raising it has landed. After a
 *   worker died, what is unsettled below it may have been in hand, so it goes one message
 *   at a time (a message that kills its worker again is the only one in hand, and its
 *   count is recorded as the partition's lowest unsettled message).
 *
 * Offsets are JavaScript numbers: exact up to 2^53, which no partition reaches.
 */

/** The most acked ranges a commit records; past them an acked message may be delivered again after a restart (at least once). */
const MAX_ACKED_RANGES = 64

/** How far past the committed offset a commit looks for acked ranges (a bound on the work per commit). */
const MAX_SCAN = 4096

/** What a commit's metadata says about its offset. */
export interface CommitMark {
  offset: number
  deliveries: number
  /** Acked offsets above `offset`, as `[from, to]` (inclusive), absolute. */
  acked: Array<[number, number]>
  /** Offsets below this (absolute, exclusive) may be in hand; absent: none past `offset`. */
  lease?: number
}

/** The metadata string of a commit, as `{"herald":{"offset":"O","deliveries":n,"acked":[[from-O,to-O],…],"lease":L-O}}` (under Kafka's 4096-byte limit). */
export function encodeMark (mark: CommitMark): string {
  const acked = mark.acked.slice(0, MAX_ACKED_RANGES).map(([from, to]) => [from - mark.offset, to - mark.offset])
  const lease = mark.lease !== undefined && mark.lease > mark.offset ? { lease: mark.lease - mark.offset } : {}
  return JSON.stringify({ herald: { offset: String(mark.offset), deliveries: mark.deliveries, ...(acked.length > 0 ? { acked } : {}), ...lease } })
}

/**
 * The mark in a commit's metadata when it belongs to `committed` (the offset that was
 * committed with it); anything else (no metadata, another client's, a stale one) says
 * nothing: no delivery counted, nothing acked beyond it.
 */
export function decodeMark (metadata: string | null | undefined, committed: number): CommitMark | undefined {
  if (metadata === null || metadata === undefined || metadata === '') return undefined
  try {
    const parsed = (JSON.parse(metadata) as { herald?: { offset?: unknown, deliveries?: unknown, acked?: unknown, lease?: unknown } }).herald
    if (parsed === undefined || Number(parsed.offset) !== committed) return undefined
    const deliveries = Number.isSafeInteger(parsed.deliveries) && (parsed.deliveries as number) >= 0 ? parsed.deliveries as number : 0
    const acked: Array<[number, number]> = []
    if (Array.isArray(parsed.acked)) {
      for (const r of parsed.acked.slice(0, MAX_ACKED_RANGES)) {
        if (Array.isArray(r) && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] > 0 && r[1] >= r[0]) acked.push([committed + (r[0] as number), committed + (r[1] as number)])
      }
    }
    const lease = Number.isSafeInteger(parsed.lease) && (parsed.lease as number) > 0 ? { lease: committed + (parsed.lease as number) } : {}
    return { offset: committed, deliveries, acked, ...lease }
  } catch {
    return undefined
  }
}

/**
 * The offsets of one partition fetched and not yet acked, in order, and what the next
 * commit should say. Offsets arrive in increasing order; acks come in any order.
 */
export class CommitLedger {
  /** Open offsets in fetch order; those before `#head` are acked and gone. */
  #open: number[] = []
  #head = 0
  /** Acked offsets still in `#open` (behind an unsettled one). */
  readonly #acked = new Set<number>()
  /** The offset after the last one fetched (-1: none yet). */
  #next = -1
  /** Acked before the last restart (from the commit's metadata): not handed over again. */
  #recoveredAcked: Array<[number, number]> = []
  /** Deliveries counted before the last restart for the offset then committed. */
  #recovered: { offset: number, deliveries: number } | undefined

  /** What the last commit of this partition said, read when the partition was assigned. */
  recover (committed: number, mark: CommitMark | undefined): void {
    if (committed >= 0) this.#next = committed
    this.#recovered = mark === undefined ? undefined : { offset: mark.offset, deliveries: mark.deliveries }
    this.#recoveredAcked = mark?.acked ?? []
  }

  /**
   * A message was fetched. False when it is not to be handed over: fetched before (a
   * restarted or rejoined consumer reads again from the committed offset) or acked before
   * the last restart.
   */
  fetched (offset: number): boolean {
    if (offset < this.#next) return false
    this.#next = offset + 1
    this.#open.push(offset)
    if (this.#recoveredAcked.some(([from, to]) => offset >= from && offset <= to)) {
      this.ack(offset)
      return false
    }
    return true
  }

  ack (offset: number): void {
    if (offset < this.headOrNext()) return
    this.#acked.add(offset)
    while (this.#head < this.#open.length && this.#acked.delete(this.#open[this.#head]!)) this.#head++
    if (this.#head > 1024 && this.#head * 2 > this.#open.length) {
      this.#open = this.#open.slice(this.#head)
      this.#head = 0
    }
    if (this.#recoveredAcked.length > 0 && this.#recoveredAcked.every(([, to]) => to < this.headOrNext())) this.#recoveredAcked = []
  }

  /** The lowest offset not acked, if one was fetched. */
  head (): number | undefined {
    return this.#head < this.#open.length ? this.#open[this.#head] : undefined
  }

  /** The offset to commit: the lowest one not acked, or the one after the last fetched (-1: nothing fetched nor known). */
  headOrNext (): number {
    return this.head() ?? this.#next
  }

  /** Deliveries of `offset` counted before the last restart (0 if none). */
  recoveredDeliveries (offset: number): number {
    return this.#recovered?.offset === offset ? this.#recovered.deliveries : 0
  }

  /**
   * What to commit now: the head, its delivery count (`handedOver`: the head is handed over,
   * or about to be, which counts one more), the acked ranges above it, and the lease.
   */
  mark (handedOver: boolean, lease?: number): CommitMark | undefined {
    const offset = this.headOrNext()
    if (offset < 0) return undefined
    const acked: Array<[number, number]> = []
    const end = Math.min(this.#open.length, this.#head + MAX_SCAN)
    for (let i = this.#head + 1; i < end && acked.length <= MAX_ACKED_RANGES; i++) {
      const o = this.#open[i]!
      if (!this.#acked.has(o)) continue
      const last = acked[acked.length - 1]
      if (last !== undefined && last[1] === this.#open[i - 1]) last[1] = o
      else acked.push([o, o])
    }
    // Acked before the restart and not fetched again yet: still acked.
    for (const [from, to] of this.#recoveredAcked) if (to >= this.#next) acked.push([Math.max(from, this.#next), to])
    const mark: CommitMark = { offset, deliveries: this.recoveredDeliveries(offset) + (handedOver ? 1 : 0), acked: acked.slice(0, MAX_ACKED_RANGES) }
    if (lease !== undefined && lease > offset) mark.lease = lease
    return mark
  }
}
