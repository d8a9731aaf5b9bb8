import type { Redis } from 'ioredis'
import { BrokerError, ErrorCode } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { redactText, redactUrl, rememberSecrets } from '../../redact.js'

/**
 * What every Redis connection of one broker shares: the masked address for messages,
 * the secrets to strip from client errors, and the outage log.
 */
export class RedisConnections {
  /** The URL with its password masked: safe in logs, errors and `health()`. */
  readonly address: string
  readonly #secrets: string[]
  readonly #logger: Logger
  /** Connections currently down: an outage starts when the first goes down, ends when the last is back. */
  readonly #down = new Set<Redis>()

  constructor (url: string, clientPassword: string | undefined, logger: Logger) {
    this.address = redactUrl(url)
    this.#logger = logger
    const secrets = [clientPassword]
    try {
      const password = new URL(url).password
      secrets.push(password, decodeURIComponent(password))
    } catch {
      // The URL was validated with the options; nothing more to strip if it does not parse.
    }
    this.#secrets = secrets.filter((s): s is string => s !== undefined && s !== '')
    rememberSecrets(this.#secrets)
  }

  /** A client error as one line with no secret in it. */
  reason (err: unknown): string {
    const text = err instanceof Error ? err.message : String(err)
    return redactText(text, this.#secrets)
  }

  /** True while at least one connection is down (errors then are expected, and already logged). */
  get outage (): boolean {
    return this.#down.size > 0
  }

  /**
   * Connects a lazy client. On failure the client is disconnected, so it does not keep
   * retrying in the background, and the error names the masked address and the reason.
   */
  async connect (client: Redis, what: string): Promise<void> {
    // ioredis rejects `connect()` with a bare "Connection is closed."; the reason comes as an 'error' event first.
    let reason: string | undefined
    const onError = (err: unknown): void => { reason ??= this.reason(err) }
    client.on('error', onError)
    try {
      await client.connect()
    } catch (err) {
      client.disconnect()
      const text = reason ?? this.reason(err)
      // A refused credential will not pass by itself: say so, so that a send fails at once instead of being retried or spooled.
      const refused = /\b(WRONGPASS|NOAUTH|NOPERM)\b/.test(text)
      const hint = refused ? '; Redis refused the credentials: check the user name and password in the URL (or redis.client.username / password) and the user\'s ACL' : ''
      throw new BrokerError(`could not reach Redis at ${this.address} (${what}): ${text}${hint}`, { code: ErrorCode.BrokerUnreachable, retriable: !refused })
    } finally {
      client.off('error', onError)
    }
    this.#watch(client)
  }

  /** Logs a lost connection once per outage, not once per failed command or reconnect attempt. */
  #watch (client: Redis): void {
    const lost = (reason: string): void => {
      if (this.#down.has(client)) return
      if (this.#down.size === 0) this.#logger.warn({ address: this.address, reason }, 'lost the connection to Redis; reconnecting')
      this.#down.add(client)
    }
    // Without an 'error' listener ioredis prints every failed attempt to the console.
    client.on('error', (err: unknown) => lost(this.reason(err)))
    client.on('reconnecting', () => lost('connection closed'))
    client.on('ready', () => {
      if (!this.#down.delete(client) || this.#down.size > 0) return
      this.#logger.info({ address: this.address }, 'reconnected to Redis')
    })
    client.on('end', () => { this.#down.delete(client) })
  }
}
