import type { Delivery } from '../broker.js'
import type { Held } from './redis-holds.js'

/** What a subscription does when one of its deliveries is settled, kept alive or set waiting. */
export interface DeliveryOwner {
  ack(held: Held): Promise<void>
  release(held: Held): Promise<void>
  keepAlive(held: Held): Promise<void>
  waiting(held: Held, on: boolean): void
}

/**
 * One stream entry handed over. A class rather than an object of closures: one object
 * per message instead of a closure per method and their shared context, on the path
 * every message takes. Its state (settled, waiting) is on its `Held`.
 */
export class RedisDelivery implements Delivery {
  readonly topic: string
  readonly value: Buffer
  readonly key: string | undefined
  readonly headers: Record<string, string>
  readonly redeliveries: number
  readonly id: string
  readonly #held: Held
  readonly #owner: DeliveryOwner

  constructor (held: Held, owner: DeliveryOwner) {
    const { entry, topic } = held
    this.topic = topic
    this.value = entry.value
    this.key = entry.key
    this.headers = entry.headers
    this.redeliveries = held.redeliveries
    this.id = `${topic}@${entry.id}`
    this.#held = held
    this.#owner = owner
  }

  ack (): Promise<void> {
    return this.#owner.ack(this.#held)
  }

  release (): Promise<void> {
    return this.#owner.release(this.#held)
  }

  keepAlive (): Promise<void> {
    return this.#owner.keepAlive(this.#held)
  }

  waiting (on: boolean): void {
    this.#owner.waiting(this.#held, on)
  }
}
