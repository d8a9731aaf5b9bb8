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

  /** Round-robin over members, starting after the last one served. */
  membersInTurn (): MemoryMember[] {
    const n = this.members.length
    const start = this.#turn++ % Math.max(n, 1)
    return this.members.slice(start).concat(this.members.slice(0, start))
  }
}

class Topic {
  readonly log: MemoryEntry[] = []
  /** Sequence number of log[0]: entries before it were trimmed. */
  base = 0
  readonly groups = new Map<string, Group>()
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
    t.log.push(entry)
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
    return this.#topics.get(topic)?.log ?? []
  }

  join (topic: string, groupName: string, member: MemoryMember): void {
    const t = this.#topic(topic)
    let group = t.groups.get(groupName)
    if (group === undefined) {
      // A new group starts from the earliest retained entry.
      group = new Group(t.base)
      t.groups.set(groupName, group)
    }
    group.members.push(member)
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
      if (p.member === member) this.release(topic, groupName, seq)
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

  release (topic: string, groupName: string, seq: number): void {
    const t = this.#topics.get(topic)
    const group = t?.groups.get(groupName)
    const p = group?.pending.get(seq)
    if (t === undefined || group === undefined || p === undefined) return
    group.pending.delete(seq)
    group.redeliver.push({ entry: p.entry, redeliveries: p.redeliveries + 1 })
    group.redeliver.sort((a, b) => a.entry.seq - b.entry.seq)
    this.#pump(t, group)
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
      const candidate = released ?? (group.next - t.base < t.log.length ? { entry: t.log[group.next - t.base]!, redeliveries: 0 } : undefined)
      if (candidate === undefined) return
      const holder = group.holderOf(candidate.entry.key)
      const order = holder !== undefined ? [holder] : group.membersInTurn()
      const taker = order.find(m => m.offer(candidate.entry, candidate.redeliveries))
      // Nobody has room (or the key's holder is full): wait for an ack or a release.
      if (taker === undefined) return
      group.pending.set(candidate.entry.seq, { entry: candidate.entry, member: taker, redeliveries: candidate.redeliveries })
      if (released !== undefined) group.redeliver.shift()
      else group.next++
    }
  }

  /** Drops entries every group is done with, beyond the retained history. */
  #trim (t: Topic): void {
    let keepFrom = t.base + t.log.length - this.#retain
    for (const group of t.groups.values()) {
      keepFrom = Math.min(keepFrom, group.next)
      for (const p of group.pending.values()) keepFrom = Math.min(keepFrom, this.#indexOf(t, p.entry))
      for (const r of group.redeliver) keepFrom = Math.min(keepFrom, this.#indexOf(t, r.entry))
    }
    const drop = keepFrom - t.base
    if (drop > 0) {
      t.log.splice(0, drop)
      t.base += drop
    }
  }

  #indexOf (t: Topic, entry: MemoryEntry): number {
    // Sequence numbers are global across topics; find the entry's index in this log.
    let lo = 0
    let hi = t.log.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const s = t.log[mid]!.seq
      if (s === entry.seq) return t.base + mid
      if (s < entry.seq) lo = mid + 1
      else hi = mid - 1
    }
    return t.base
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
