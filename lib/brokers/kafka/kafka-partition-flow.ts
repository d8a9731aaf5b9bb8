/**
 * The lanes of one partition: messages with the same key are handed over one after the
 * other, in offset order; messages with different keys, side by side. A message without a
 * key belongs to no lane (as on every other broker: order is per key). Kept apart from
 * kafkajs so it can be reasoned about (and tested) alone.
 */
export interface Entry<T> {
  readonly offset: number
  readonly key: string | undefined
  readonly item: T
}

export class PartitionFlow<T> {
  /** Entries whose turn has come (their key has nothing handed over before them), in arrival order. */
  readonly #ready: Array<Entry<T>> = []
  #readyHead = 0
  /** Per key: the entries of that key not yet settled, the first handed over or ready. */
  readonly #lanes = new Map<string, Array<Entry<T>>>()
  /** Fetched and not handed over (ready or waiting behind their key). */
  #buffered = 0
  /** Handed over and not settled. */
  readonly #inHand = new Set<Entry<T>>()

  get buffered (): number {
    return this.#buffered
  }

  get handed (): number {
    return this.#inHand.size
  }

  add (entry: Entry<T>): void {
    this.#buffered++
    if (entry.key === undefined) {
      this.#ready.push(entry)
      return
    }
    const lane = this.#lanes.get(entry.key)
    if (lane === undefined) {
      this.#lanes.set(entry.key, [entry])
      this.#ready.push(entry)
    } else {
      lane.push(entry)
    }
  }

  /** The next entry whose turn has come, without taking it. */
  peek (): Entry<T> | undefined {
    return this.#readyHead < this.#ready.length ? this.#ready[this.#readyHead] : undefined
  }

  /** Takes the entry `peek()` returned: it is handed over. */
  take (): Entry<T> | undefined {
    const entry = this.peek()
    if (entry === undefined) return undefined
    this.#ready[this.#readyHead++] = undefined as unknown as Entry<T>
    if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready.splice(0, this.#readyHead)
      this.#readyHead = 0
    }
    this.#buffered--
    this.#inHand.add(entry)
    return entry
  }

  /** A handed-over entry was acked: the next of its key gets its turn. */
  settled (entry: Entry<T>): void {
    if (!this.#inHand.delete(entry)) return
    if (entry.key !== undefined) this.#next(entry)
  }

  /** `entry`, the head of its lane, leaves it (if it still is the head): the next of its key is ready. */
  #next (entry: Entry<T>): void {
    const lane = this.#lanes.get(entry.key!)
    if (lane === undefined || lane[0] !== entry) return
    lane.shift()
    if (lane.length === 0) this.#lanes.delete(entry.key!)
    else this.#ready.push(lane[0]!)
  }

  /** A handed-over entry's order is kept by its consumer now: the next of its key gets its turn, while this one stays in hand. */
  handOn (entry: Entry<T>): void {
    if (!this.#inHand.has(entry) || entry.key === undefined) return
    this.#next(entry)
  }

  /** A handed-over entry was given back: it is the next to hand over again (its key keeps its place). */
  returned (entry: Entry<T>): void {
    if (!this.#inHand.delete(entry)) return
    this.#buffered++
    if (this.#readyHead > 0) this.#ready[--this.#readyHead] = entry
    else this.#ready.unshift(entry)
  }

  /** Forgets every entry not handed over (the partition moved, or is handed back): they are fetched again by whoever owns it next. */
  dropBuffered (): void {
    this.#ready.length = 0
    this.#readyHead = 0
    this.#buffered = 0
    for (const [key, lane] of this.#lanes) {
      // Only the first of a lane can be handed over; keep it while it is.
      if (this.#inHand.has(lane[0]!)) lane.splice(1)
      else this.#lanes.delete(key)
    }
  }
}
