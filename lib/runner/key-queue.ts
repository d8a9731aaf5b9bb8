/**
 * Runs tasks so that tasks with the same key run one after the other, in the order they
 * were added, while tasks with different keys (or no key) run side by side. A task's
 * whole life (its retries and their waits included) holds its key, unless it hands the
 * key on sooner with `next()`: the runner does once a message's ack is on its way, so the
 * next message of its key does not wait for the broker to confirm the ack.
 */
export class KeyQueue {
  readonly #tails = new Map<string, Promise<void>>()

  run (key: string | undefined, task: (next: () => void) => Promise<void>): Promise<void> {
    if (key === undefined) return task(() => {})
    const previous = this.#tails.get(key) ?? Promise.resolve()
    let next: () => void = () => {}
    const handedOn = new Promise<void>(resolve => { next = resolve })
    const current = previous.then(() => task(next), () => task(next))
    const tail = Promise.race([handedOn, current.then(() => {}, () => {})])
    this.#tails.set(key, tail)
    void tail.then(() => { if (this.#tails.get(key) === tail) this.#tails.delete(key) })
    return current
  }
}

/**
 * Bounds how many handler calls run at once. Only a running call holds a slot: a message
 * waiting for its retry does not, so waiting never stalls the others.
 */
export class Semaphore {
  #free: number
  readonly #waiting: Array<() => void> = []

  constructor (slots: number) { this.#free = slots }

  async acquire (): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return
    }
    await new Promise<void>(resolve => this.#waiting.push(resolve))
  }

  release (): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next()
    else this.#free++
  }
}
