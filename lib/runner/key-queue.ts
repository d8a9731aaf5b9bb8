/**
 * Runs tasks so that tasks with the same key run one after the other, in the order they
 * were added, while tasks with different keys (or no key) run side by side. A task's
 * whole life (its retries and their waits included) holds its key, unless it hands the
 * key on sooner with `next()`: the runner does once a message's ack is on its way, so the
 * next message of its key does not wait for the broker to confirm the ack.
 */
export class KeyQueue {
  /** Per busy key: the tasks waiting for it, in order. A key with no entry is free. */
  readonly #waiting = new Map<string, Array<() => void>>()

  run (key: string | undefined, task: (next: () => void) => Promise<void>): Promise<void> {
    if (key === undefined) return task(() => {})
    const waiting = this.#waiting.get(key)
    if (waiting === undefined) {
      // The key is free: the task starts now, and nothing is allocated for the queue.
      this.#waiting.set(key, [])
      return this.#start(key, task)
    }
    return new Promise<void>((resolve, reject) => {
      waiting.push(() => { this.#start(key, task).then(resolve, reject) })
    })
  }

  #start (key: string, task: (next: () => void) => Promise<void>): Promise<void> {
    let handedOn = false
    const next = (): void => {
      if (handedOn) return
      handedOn = true
      const waiting = this.#waiting.get(key)!
      const following = waiting.shift()
      if (following === undefined) this.#waiting.delete(key)
      // Started in a microtask, never from inside the caller of next(): that caller finishes its step first.
      else queueMicrotask(following)
    }
    let running: Promise<void>
    try {
      running = task(next)
    } catch (err) {
      next()
      return Promise.reject(err)
    }
    return running.then(() => next(), (err: unknown) => { next(); throw err })
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

  /** Takes a slot if one is free, at once (no promise): false when the caller must `acquire()`. */
  tryAcquire (): boolean {
    if (this.#free <= 0) return false
    this.#free--
    return true
  }

  async acquire (): Promise<void> {
    if (this.tryAcquire()) return
    await new Promise<void>(resolve => this.#waiting.push(resolve))
  }

  release (): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next()
    else this.#free++
  }
}
