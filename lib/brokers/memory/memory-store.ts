/**
 * The embedded broker's state: one append-only log per topic, with consumer groups that
 * work like Redis stream groups (a cursor, a list of pending entries, redelivery of what
 * was released). It lives in the process, shared by every Messaging instance that uses
 * the memory broker, so a service and a worker in one process talk to each other.
 */
export interface MemoryEntry {
  readonly seq: number
  readonly topic: string
  readonly key: string | undefined
  readonly value: Buffer
  readonly headers: Record<string, string>
}

/** A consumer in a group: it is offered entries while it has room. */
export interface MemoryMember {
  /** Offers an entry; the member takes it (returns true) or has no room (false). */
  offer(entry: MemoryEntry, redeliveries: number): boolean
}

interface Pending {
  entry: MemoryEntry
  member: MemoryMember
  redeliveries: number
}

class Group {
  /** Index into the topic's log of the next entry never delivered to this group. */
  next: number
  readonly members: MemoryMember[] = []
  readonly pending = new Map<number, Pending>()
  /** Released entries, delivered again before new ones, in log order. */
  readonly redeliver: Array<{ entry: MemoryEntry, redeliveries: number }> = []
  #turn = 0

  constructor (next: number) { this.next = next }

  /** Member holding a pending entry with this key: later entries of the key go to it too, to keep their order. */
  holderOf (key: string | undefined): MemoryMember | undefined {
    if (key === undefined) return undefined
    for (const p of this.pending.values()) if (p.entry.key === key) return p.member
    return undefined
  }

  /** The first member, round-robin from the one after the last served, that takes the entry. */
  offerInTurn (entry: MemoryEntry, redeliveries: number): MemoryMember | undefined {
    const n = this.members.length
    const start = this.#turn++ % n
    for (let i = 0; i < n; i++) {
      const member = this.members[(start + i) % n]!
      if (member.offer(entry, redeliveries)) return member
    }
    return undefined
  }
}

/**
 * A topic's log. Trimming moves `head` forward instead of shifting the array on every
 * publish (a `splice(0, 1)` per message once `retain` is reached cost a busy service ~17%
 * of its CPU); the dropped slots are cut off in one go once they are half of the array.
 */
class Topic {
  #items: MemoryEntry[] = []
  /** Index in `#items` of the oldest retained entry. */
  #head = 0
  /** Position (in the topic's history) of the oldest retained entry: entries before it were trimmed. */
  base = 0
  readonly groups = new Map<string, Group>()
  /** Sequence numbers of entries removed from the log (dead letters purged or replayed): never delivered again. */
  readonly removed = new Set<number>()

  /** How many entries are retained. */
  get length (): number {
    return this.#items.length - this.#head
  }

  /** The entry at `position` in the topic's history, if it is retained. */
  at (position: number): MemoryEntry | undefined {
    return position < this.base ? undefined : this.#items[this.#head + position - this.base]
  }

  push (entry: MemoryEntry): void {
    this.#items.push(entry)
  }

  /** Drops the oldest entry. */
  shift (): void {
    this.#head++
    this.base++
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
  }

  retained (): MemoryEntry[] {
    const items = this.#items.slice(this.#head)
    return this.removed.size === 0 ? items : items.filter(e => !this.removed.has(e.seq))
  }
}

export class MemoryStore {
  readonly #topics = new Map<string, Topic>()
  #seq = 0
  #retain: number

  constructor (retain = 10_000) { this.#retain = retain }

  /** Entries kept per topic once every group is done with them. */
  get retain (): number {
    return this.#retain
  }

  /** Keeps at least `retain` entries per topic from now on (the store is shared: the largest asked wins). */
  retainAtLeast (retain: number): void {
    this.#retain = Math.max(this.#retain, retain)
  }

  #topic (name: string): Topic {
    let t = this.#topics.get(name)
    if (t === undefined) {
      t = new Topic()
      this.#topics.set(name, t)
    }
    return t
  }

  append (topic: string, key: string | undefined, value: Buffer, headers: Record<string, string>): MemoryEntry {
    const t = this.#topic(topic)
    const entry: MemoryEntry = { seq: this.#seq++, topic, key, value, headers: { ...headers } }
    t.push(entry)
    for (const group of t.groups.values()) this.#pump(t, group)
    this.#trim(t)
    return entry
  }

  /** Creates the topic so that it keeps what arrives (a dead-letter destination). */
  ensureTopic (topic: string): void {
    this.#topic(topic)
  }

  /** Entries of a topic still retained, oldest first (for inspection and tests). */
  entries (topic: string): readonly MemoryEntry[] {
    return this.#topics.get(topic)?.retained() ?? []
  }

  join (topic: string, groupName: string, member: MemoryMember): void {
    const t = this.#topic(topic)
    const group = this.#group(t, groupName)
    group.members.push(member)
    this.#pump(t, group)
  }

  #group (t: Topic, groupName: string): Group {
    let group = t.groups.get(groupName)
    if (group === undefined) {
      // A new group starts from the earliest retained entry.
      group = new Group(t.base)
      t.groups.set(groupName, group)
    }
    return group
  }

  /** Removes an entry from a topic's log: no group is handed it from now on (one already holding it may still settle it). */
  remove (topic: string, seq: number): void {
    this.#topics.get(topic)?.removed.add(seq)
  }

  /** Hands a new entry to one group of the topic only, after what it has to deliver again (a dead letter replayed). */
  deliverTo (topic: string, groupName: string, key: string | undefined, value: Buffer, headers: Record<string, string>): void {
    const t = this.#topic(topic)
    const group = this.#group(t, groupName)
    group.redeliver.push({ entry: { seq: this.#seq++, topic, key, value, headers: { ...headers } }, redeliveries: 0 })
    this.#pump(t, group)
  }

  /** Removes a member; whatever it still holds goes back to the group. */
  leave (topic: string, groupName: string, member: MemoryMember): void {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    if (t === undefined || group === undefined) return
    const i = group.members.indexOf(member)
    if (i >= 0) group.members.splice(i, 1)
    for (const [seq, p] of [...group.pending]) {
      if (p.member === member) this.release(topic, groupName, seq, { counted: true })
    }
  }

  ack (topic: string, groupName: string, seq: number): void {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    if (t === undefined || group === undefined) return
    group.pending.delete(seq)
    this.#pump(t, group)
    this.#trim(t)
  }

  /**
   * Puts a pending entry back for redelivery. A release uses up no attempt; an entry whose
   * member left without settling it (`counted`) was delivered once more, as on Redis.
   */
  release (topic: string, groupName: string, seq: number, { counted = false }: { counted?: boolean } = {}): void {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    const p = group?.pending.get(seq)
    if (t === undefined || group === undefined || p === undefined) return
    group.pending.delete(seq)
    group.redeliver.push({ entry: p.entry, redeliveries: p.redeliveries + (counted ? 1 : 0) })
    group.redeliver.sort((a, b) => a.entry.seq - b.entry.seq)
    this.#pump(t, group)
  }

  /**
   * Entries of the topic the group has not settled: never delivered (from its cursor to the
   * end of the log), pending, or released for redelivery. Undefined when the topic or the
   * group does not exist.
   */
  lag (topic: string, groupName: string): number | undefined {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    if (t === undefined || group === undefined) return undefined
    return (t.base + t.length - group.next) + group.pending.size + group.redeliver.length
  }

  /** Offers a group's next entries again (a member has more room than when they were last offered). */
  pump (topic: string, groupName: string): void {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    if (t !== undefined && group !== undefined) this.#pump(t, group)
  }

  /** Hands entries to members with room: released ones first, then new ones, in log order. */
  #pump (t: Topic, group: Group): void {
    while (group.members.length > 0) {
      const released = group.redeliver[0]
      const entry = released !== undefined ? released.entry : t.at(group.next)
      if (entry === undefined) return
      if (released === undefined && t.removed.has(entry.seq)) {
        group.next++
        continue
      }
      const redeliveries = released !== undefined ? released.redeliveries : 0
      const holder = group.holderOf(entry.key)
      const taker = holder !== undefined ? (holder.offer(entry, redeliveries) ? holder : undefined) : group.offerInTurn(entry, redeliveries)
      // Nobody has room (or the key's holder is full): wait for an ack or a release.
      if (taker === undefined) return
      group.pending.set(entry.seq, { entry, member: taker, redeliveries })
      if (released !== undefined) group.redeliver.shift()
      else group.next++
    }
  }

  /**
   * Drops the oldest entries beyond the retained history, as long as no group still needs
   * them (not yet delivered, pending, or released for redelivery). Costs O(groups) plus one
   * step per entry dropped: at most one per publish once the topic holds `retain` entries.
   */
  #trim (t: Topic): void {
    let drop = t.length - this.#retain
    if (drop <= 0) return
    for (const group of t.groups.values()) drop = Math.min(drop, group.next - t.base)
    for (; drop > 0; drop--) {
      const oldest = t.at(t.base)!
      for (const group of t.groups.values()) {
        // A pending or released entry keeps itself and everything after it.
        if (group.pending.has(oldest.seq)) return
        const released = group.redeliver[0]
        if (released !== undefined && released.entry.seq <= oldest.seq) return
      }
      t.removed.delete(oldest.seq)
      t.shift()
    }
  }
}

let shared: MemoryStore | undefined

/**
 * The process-wide store behind every memory broker. Every instance in the process shares
 * it, so each `retain` asked counts: the store keeps the largest (a smaller one would drop
 * history another instance relies on).
 */
export function sharedMemoryStore (retain?: number): MemoryStore {
  shared ??= new MemoryStore(retain)
  if (retain !== undefined) shared.retainAtLeast(retain)
  return shared
}
