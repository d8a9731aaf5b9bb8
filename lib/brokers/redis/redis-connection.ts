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
  /** Clients still connecting: `abort()` drops them. */
  readonly #connecting = new Set<Redis>()
  readonly #connectTimeout: number

  constructor (url: string, clientPassword: string | undefined, logger: Logger, connectTimeout = 5_000) {
    this.address = redactUrl(url)
    this.#logger = logger
    this.#connectTimeout = connectTimeout
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

  /** Disconnects the clients still connecting (the broker is closing). */
  abort (): void {
    for (const client of this.#connecting) client.disconnect()
  }

  /**
   * Connects a lazy client, within the connect timeout (ioredis bounds only the TCP
   * connect: a server that accepts and never answers would hold the ready check forever),
   * then checks the database the client selects exists (ioredis would only emit the SELECT
   * error and stay on database 0). On failure the client is disconnected, so it does not
   * keep retrying in the background, and the error names the masked address and the reason.
   */
  async connect (client: Redis, what: string): Promise<void> {
    // ioredis rejects `connect()` with a bare "Connection is closed."; the reason comes as an 'error' event first.
    let reason: string | undefined
    const onError = (err: unknown): void => { reason ??= this.reason(err) }
    client.on('error', onError)
    this.#connecting.add(client)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      client.disconnect()
    }, this.#connectTimeout)
    try {
      await client.connect()
      await this.#checkDatabase(client)
    } catch (err) {
      client.disconnect()
      if (err instanceof BrokerError) throw err
      if (timedOut) {
        throw new BrokerError(`Redis at ${this.address} (${what}) did not answer within ${this.#connectTimeout} ms (connectTimeout): check the address and port, or raise connectTimeout`, { code: ErrorCode.ConnectTimeout })
      }
      const text = reason ?? this.reason(err)
      // A refused credential will not pass by itself: say so, so that a send fails at once instead of being retried or spooled.
      if (/\b(WRONGPASS|NOAUTH|NOPERM)\b/.test(text)) {
        throw new BrokerError(`Redis at ${this.address} refused the login (${what}): ${text}; check the user name and password in the URL (or redis.client.username / password) and the user's ACL`, { code: ErrorCode.BrokerAuth, retriable: false })
      }
      throw new BrokerError(`could not reach Redis at ${this.address} (${what}): ${text}`, { code: ErrorCode.BrokerUnreachable })
    } finally {
      clearTimeout(timer)
      this.#connecting.delete(client)
      client.off('error', onError)
    }
    this.#watch(client)
  }

  async #checkDatabase (client: Redis): Promise<void> {
    const db = Number(client.options.db ?? 0)
    if (db === 0) return
    try {
      await client.select(db)
    } catch (err) {
      throw new BrokerError(`Redis at ${this.address} has no database ${db} (${this.reason(err)}): the URL path (or redis.client.db) is the database number, from 0 to the server's "databases" setting minus 1 (16 databases by default)`, { code: ErrorCode.UnknownDatabase, retriable: false, cause: err })
    }
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
