import { BrokerError } from '../../errors.js'
import type { Broker, BrokerHealth, DeadLetterCursor, Delivery, DeliveryHandler, OutgoingMessage, SubscribeOptions, Subscription, TopicLag } from '../broker.js'
import type { MemorySettings } from './memory-config.js'
import { sharedMemoryStore, type MemoryEntry, type MemoryMember, type MemoryStore } from './memory-store.js'

/**
 * The embedded broker: no server, the same delivery rules as the real ones (groups,
 * per-key order, acknowledgement, redelivery of what was released). Every instance in a
 * process shares one store, so a service and a worker in one process talk to each other.
 */
export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const
  /** publish() stores its messages before it returns: overlapping calls keep their call order. */
  readonly maxPublishesInFlight = 8
  readonly #store: MemoryStore
  readonly #subscriptions = new Set<MemorySubscription>()
  #closed = false

  constructor (settings: MemorySettings, store: MemoryStore = sharedMemoryStore(settings.retain)) {
    this.#store = store
  }

  async connect (): Promise<void> {
    if (this.#closed) throw new BrokerError('the memory broker is closed; create a new Messaging instance', { retriable: false })
  }

  async publish (messages: OutgoingMessage[]): Promise<Array<Error | undefined>> {
    if (this.#closed) {
      const err = new BrokerError('the memory broker is closed; create a new Messaging instance', { retriable: false })
      return messages.map(() => err)
    }
    for (const m of messages) this.#store.append(m.topic, m.key, m.value, m.headers)
    return messages.map(() => undefined)
  }

  async subscribe (options: SubscribeOptions, onDelivery: DeliveryHandler): Promise<Subscription> {
    await this.connect()
    for (const t of options.deadLetterTopics) this.#store.ensureTopic(t)
    const sub = new MemorySubscription(this.#store, options, onDelivery, () => this.#subscriptions.delete(sub))
    this.#subscriptions.add(sub)
    sub.start()
    return sub
  }

  async health (): Promise<BrokerHealth> {
    return { ok: !this.#closed, broker: 'memory', detail: this.#closed ? 'closed' : 'in-process' }
  }

  /** What each topic's group has not settled yet, read from the store: a topic or group that does not exist is left out. */
  async lag (group: string, topics: readonly string[]): Promise<TopicLag[]> {
    const out: TopicLag[] = []
    for (const topic of topics) {
      const messages = this.#store.lag(topic, group)
      if (messages !== undefined) out.push({ topic, messages })
    }
    return out
  }

  /** Reads a dead-letter topic's log without a group: nothing is settled by reading. */
  async deadLetters (destination: string): Promise<DeadLetterCursor> {
    await this.connect()
    return memoryDeadLetters(this.#store, destination)
  }

  /**
   * Keeps a retry on a timer, then hands it to the group's redelivery queue, as a replay
   * does. It lives in this process like the rest of the embedded broker's messages, so it
   * is lost with the process; the timer does not keep the process alive.
   */
  async scheduleRetry (group: string, message: OutgoingMessage, dueAt: number): Promise<void> {
    await this.connect()
    const store = this.#store
    setTimeout(() => store.deliverTo(message.topic, group, message.key, message.value, message.headers), Math.max(0, dueAt - Date.now())).unref()
  }

  async close (): Promise<void> {
    this.#closed = true
    await Promise.all([...this.#subscriptions].map(s => s.close()))
  }
}

class MemorySubscription implements Subscription {
  readonly #store: MemoryStore
  readonly #options: SubscribeOptions
  readonly #onDelivery: DeliveryHandler
  readonly #onClosed: () => void
  readonly #members = new Map<string, MemoryMember>()
  #inFlight = 0
  /** Of `#inFlight`, those waiting for a retry: not counted against `maxInFlight`. */
  #retrying = 0
  #paused = false
  #idle: Array<() => void> = []

  constructor (store: MemoryStore, options: SubscribeOptions, onDelivery: DeliveryHandler, onClosed: () => void) {
    this.#store = store
    this.#options = options
    this.#onDelivery = onDelivery
    this.#onClosed = onClosed
  }

  start (): void {
    for (const topic of this.#options.topics) {
      const member: MemoryMember = { offer: (entry, redeliveries) => this.#offer(entry, redeliveries) }
      this.#members.set(topic, member)
      this.#store.join(topic, this.#options.group, member)
    }
  }

  #offer (entry: MemoryEntry, redeliveries: number): boolean {
    if (this.#paused || this.#inFlight - this.#retrying >= this.#options.maxInFlight) return false
    this.#inFlight++
    let settled = false
    let retrying = false
    const settle = (how: 'ack' | 'release'): void => {
      if (settled) return
      settled = true
      if (retrying) this.#retrying--
      this.#inFlight--
      if (how === 'ack') this.#store.ack(entry.topic, this.#options.group, entry.seq)
      else this.#store.release(entry.topic, this.#options.group, entry.seq)
      // The room it made is for any topic of the subscription, not only this one.
      this.#offerMore()
      if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve()
    }
    const delivery: Delivery = {
      topic: entry.topic,
      value: entry.value,
      key: entry.key,
      headers: { ...entry.headers },
      redeliveries,
      id: `${entry.topic}@${entry.seq}`,
      ack: async () => settle('ack'),
      release: async () => settle('release'),
      waiting: (on) => {
        if (settled || retrying === on) return
        retrying = on
        this.#retrying += on ? 1 : -1
        // Room for another: offer what the store holds for this group.
        if (on) this.#offerMore()
      }
    }
    // Hand over outside the store's call stack; microtasks keep the log order.
    queueMicrotask(() => { void this.#onDelivery(delivery) })
    return true
  }

  /** Offers what the store holds for this group on each of its topics (there is room again). */
  #offerMore (): void {
    if (!this.#paused) for (const topic of this.#members.keys()) this.#store.pump(topic, this.#options.group)
  }

  async pause (): Promise<void> {
    this.#paused = true
  }

  async close (): Promise<void> {
    this.#paused = true
    if (this.#inFlight > 0) await new Promise<void>(resolve => this.#idle.push(resolve))
    for (const [topic, member] of this.#members) this.#store.leave(topic, this.#options.group, member)
    this.#members.clear()
    this.#onClosed()
  }
}

/** A pass over a memory dead-letter topic: reads its log, removes by sequence number, replays into one group. */
function memoryDeadLetters (store: MemoryStore, destination: string): DeadLetterCursor {
  let after = -1
  const entries = store.entries(destination)
  /** The last letter when the pass began: the pass reads no further. */
  const last = entries[entries.length - 1]?.seq ?? -1
  return {
    total: entries.length,
    read: async (limit) => {
      const next = store.entries(destination).filter(e => e.seq > after && e.seq <= last).slice(0, limit)
      if (next.length > 0) after = next[next.length - 1]!.seq
      return next.map(e => ({ id: String(e.seq), value: e.value, key: e.key, headers: { ...e.headers } }))
    },
    remove: async (message) => store.remove(destination, Number(message.id)),
    redeliver: async (message, group) => store.deliverTo(message.topic, group, message.key, message.value, message.headers),
    close: async () => {}
  }
}
