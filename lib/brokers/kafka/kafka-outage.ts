import type { Logger } from '../../logger.js'

/**
 * What one Kafka broker's clients (its producer, admin and consumers) know about the
 * cluster being reachable, so that an outage is logged once when it starts and once when
 * it ends, not once per retry, crash, restart or message. Each client that fails is
 * "down" until it works again; the outage lasts while any is down. What fails meanwhile
 * is logged at debug: it is the outage, already said.
 */
export class KafkaOutage {
  readonly #logger: Logger
  readonly #address: string
  readonly #down = new Set<string>()
  #since = 0
  /** When some client last reached Kafka. */
  #lastReached = 0

  constructor (logger: Logger, address: string) {
    this.#logger = logger
    this.#address = address
  }

  /** True while some client is down. */
  get active (): boolean {
    return this.#down.size > 0
  }

  /**
   * `who` (a client: `producer`, `connection`, a group) failed in a way that retrying fixes
   * once Kafka answers. `startedAt`: when the failed attempt began; one that began before
   * Kafka was last reached is an echo of an outage already over (kafkajs retries a send for
   * seconds), not a new one.
   */
  lost (who: string, reason: string, startedAt?: number): void {
    if (this.#down.has(who)) return
    if (startedAt !== undefined && startedAt < this.#lastReached) return
    if (this.#down.size === 0) {
      this.#since = Date.now()
      // Never reached yet is no lost connection: whoever was connecting reports the real error.
      if (this.#lastReached === 0) this.#logger.debug({ address: this.#address, reason }, 'Kafka is not reachable yet')
      else this.#logger.warn({ address: this.#address, reason }, 'lost the connection to Kafka; reconnecting')
    }
    this.#down.add(who)
  }

  /** `who` works again; the outage ends once every client that was down does. */
  back (who: string): void {
    const firstReach = this.#lastReached === 0
    this.#lastReached = Date.now()
    if (!this.#down.delete(who) || this.#down.size > 0) return
    this.#logger.info({ address: this.#address, seconds: Math.round((Date.now() - this.#since) / 100) / 10 }, firstReach ? 'reached Kafka' : 'reconnected to Kafka')
  }

  /** Something reached Kafka: the connection works again (clients still down stay down until they work). */
  reached (): void {
    this.back('connection')
  }

  /** A client that is closing is no longer waited for. */
  forget (who: string): void {
    this.back(who)
  }
}

/**
 * Error text that says Kafka (or the way to it) is not answering, as opposed to an answer
 * (a leader or coordinator that moved, which kafkajs retries, is an answer).
 */
export function isConnectionTrouble (text: string): boolean {
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|ENOTFOUND|EAI_AGAIN|Connection error|Connection timeout|Closed connection|connection (was )?closed|No broker available|Broker not connected|Request .* timed out|Failed to connect/i.test(text)
}
