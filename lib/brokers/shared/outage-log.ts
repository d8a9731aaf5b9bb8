import type { Logger } from '../../logger.js'

/**
 * What one broker's clients (its producer, admin, consumers, connections) know about the
 * broker being reachable, so that an outage is logged once when it starts and once when
 * it ends, not once per retry, crash, restart or message. Each client that fails is
 * "down" until it works again; the outage lasts while any is down. What fails meanwhile
 * is logged at debug by the caller: it is the outage, already said.
 *
 * @example
 * const outage = new OutageLog(logger, 'Kafka', '127.0.0.1:9092')
 * outage.lost('producer', 'ECONNREFUSED')   // logs "lost the connection to Kafka; reconnecting"
 * outage.back('producer')                    // logs "reconnected to Kafka"
 */
export class OutageLog {
  readonly #logger: Logger
  readonly #broker: string
  readonly #address: string
  readonly #down = new Set<string>()
  #since = 0
  /** When some client last reached the broker. */
  #lastReached = 0

  constructor (logger: Logger, broker: string, address: string) {
    this.#logger = logger
    this.#broker = broker
    this.#address = address
  }

  /** True while some client is down. */
  get active (): boolean {
    return this.#down.size > 0
  }

  /**
   * `who` (a client: `producer`, `connection`, a group) failed in a way that retrying fixes
   * once the broker answers. `startedAt`: when the failed attempt began; one that began
   * before the broker was last reached is an echo of an outage already over (a client may
   * retry a send for seconds), not a new one.
   */
  lost (who: string, reason: string, startedAt?: number): void {
    if (this.#down.has(who)) return
    if (startedAt !== undefined && startedAt < this.#lastReached) return
    if (this.#down.size === 0) {
      this.#since = Date.now()
      // Never reached yet is no lost connection: whoever was connecting reports the real error.
      if (this.#lastReached === 0) this.#logger.debug({ address: this.#address, reason }, `${this.#broker} is not reachable yet`)
      else this.#logger.warn({ address: this.#address, reason }, `lost the connection to ${this.#broker}; reconnecting`)
    }
    this.#down.add(who)
  }

  /** `who` works again; the outage ends once every client that was down does. */
  back (who: string): void {
    const firstReach = this.#lastReached === 0
    this.#lastReached = Date.now()
    if (!this.#down.delete(who) || this.#down.size > 0) return
    this.#logger.info({ address: this.#address, seconds: Math.round((Date.now() - this.#since) / 100) / 10 }, firstReach ? `reached ${this.#broker}` : `reconnected to ${this.#broker}`)
  }

  /** Something reached the broker: the connection works again (clients still down stay down until they work). */
  reached (): void {
    this.back('connection')
  }

  /** A client that is closing is no longer waited for. */
  forget (who: string): void {
    this.back(who)
  }
}
