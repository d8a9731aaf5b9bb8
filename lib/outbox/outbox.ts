import { mkdirSync, realpathSync } from 'node:fs'
import type { OutgoingMessage } from '../brokers/broker.js'
import type { Logger } from '../logger.js'
import type { OutboxSettings } from './outbox-config.js'
import { notWritable, OutboxLock } from './outbox-lock.js'
import { OutboxRelay } from './outbox-relay.js'
import { OutboxSpool } from './outbox-spool.js'

/** What `messaging.outbox` reports. */
export interface OutboxStats {
  /** The spool directory (absolute). */
  dir: string
  /** Messages stored and not yet acknowledged by the broker. */
  pending: number
  /** Their bytes on disk. */
  bytes: number
  maxBytes: number
  /** `empty`: sends go to the broker; `relaying`: the relay is sending the spool; `retrying`: the broker does not take it yet. */
  state: 'empty' | 'relaying' | 'retrying'
  /** How long the oldest pending message has waited, in ms. */
  oldestAgeMs: number | undefined
  /** Why the broker does not take messages, while it does not. */
  lastError: string | undefined
  /** Messages the broker refused for good, kept in `undeliverable.log` (earlier runs' included, until the file is removed). */
  undeliverable: number
}

export interface OutboxDeps {
  logger: Logger
  /** Sends a batch to the broker, with the `Broker.publish` contract. */
  publish: (messages: OutgoingMessage[]) => Promise<Array<Error | undefined>>
  publishTimeout: number
  maxBatchSize: number
}

/**
 * Where the producer puts what the broker did not take: an `Outbox`. The
 * producer needs only this much of it.
 */
export interface ProducerSpool {
  /** True while it holds messages not yet relayed: a new send must go behind them. */
  readonly active: boolean
  /** Stores the message behind the others; resolves once it is durable. `reason`: why it did not go to the broker. */
  append(message: OutgoingMessage, reason?: unknown): Promise<void>
}

/**
 * The outbox: a local durable spool that takes the sends the broker does not acknowledge
 * in time (or refuses with a retriable error), and a relay that sends them on once the
 * broker answers, in order. While it holds anything, every new send is spooled behind it
 * (the producer asks `active`), so order is kept: globally, hence per key. One process per
 * directory (a lock file). See `OutboxSpool` for the files and `OutboxRelay` for the relay.
 */
export class Outbox {
  readonly #spool: OutboxSpool
  readonly #relay: OutboxRelay
  readonly #lock: OutboxLock
  #closing: Promise<void> | undefined

  private constructor (spool: OutboxSpool, relay: OutboxRelay, lock: OutboxLock) {
    this.#spool = spool
    this.#relay = relay
    this.#lock = lock
  }

  /**
   * Creates the directory if missing, takes its lock, reads what a previous run left, and
   * starts relaying that. Synchronous (start-up): throws a `ConfigError` naming
   * `outbox.dir` when the directory cannot be used or another process holds it.
   */
  static open (settings: OutboxSettings, deps: OutboxDeps): Outbox {
    let dir: string
    try {
      mkdirSync(settings.dir, { recursive: true, mode: 0o700 })
      dir = realpathSync(settings.dir)
    } catch (err) {
      throw notWritable(settings.dir, err)
    }
    const lock = OutboxLock.acquire(dir, deps.logger)
    let spool: OutboxSpool
    try {
      spool = new OutboxSpool(dir, settings.maxBytes, deps.logger)
    } catch (err) {
      lock.release()
      throw notWritable(dir, err)
    }
    const relay = new OutboxRelay({ spool, publish: deps.publish, publishTimeout: deps.publishTimeout, maxBatchSize: deps.maxBatchSize, logger: deps.logger })
    spool.onWritten = () => relay.written()
    if (spool.pending > 0) {
      deps.logger.info({ dir, pending: spool.pending, bytes: spool.bytes }, 'relaying the messages a previous run left in the outbox')
      relay.written()
    } else {
      // Segments relayed entirely whose deletion a crash interrupted.
      spool.finishDrain()
    }
    return new Outbox(spool, relay, lock)
  }

  /** True while the spool holds messages (or is writing some): new sends must queue behind them. */
  get active (): boolean {
    return !this.#spool.idle
  }

  /**
   * Stores a message behind everything spooled; resolves once it is on disk. `reason`
   * is why it did not go to the broker (logged once per outage). Rejects with a
   * `BrokerError` coded `HERALD_OUTBOX_FULL` or `HERALD_OUTBOX_WRITE` when it was not stored.
   */
  append (message: OutgoingMessage, reason?: unknown): Promise<void> {
    if (reason !== undefined) this.#relay.outage(reason)
    return this.#spool.append(message)
  }

  stats (): OutboxStats {
    const spool = this.#spool
    const oldest = spool.oldest
    return {
      dir: spool.dir,
      pending: spool.pending,
      bytes: spool.bytes,
      maxBytes: spool.maxBytes,
      state: spool.idle ? 'empty' : this.#relay.retrying ? 'retrying' : 'relaying',
      oldestAgeMs: oldest === undefined ? undefined : Date.now() - oldest,
      lastError: this.#relay.lastError,
      undeliverable: spool.undeliverable
    }
  }

  /**
   * Lets the relay drain the spool for up to `drainTimeout` ms (trying at once, not after
   * its backoff), then stops it, closes the files and releases the directory. What is
   * left is relayed on the next start. Idempotent.
   */
  close (drainTimeout: number): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#relay.drained(drainTimeout)
        await this.#relay.stop()
        await this.#spool.close()
      } finally {
        this.#lock.release()
      }
    })()
    return this.#closing
  }
}
