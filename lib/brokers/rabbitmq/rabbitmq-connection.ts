import amqplib, { type Channel, type ChannelModel, type ConfirmChannel, type SocketOptions } from 'amqplib'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { redactUrl, rememberSecrets } from '../../redact.js'
import { Backoff, settledWithin, sleep } from '../../time.js'
import { brokerClosedError } from '../shared/closed-error.js'
import { DEFAULT_CONNECT_TIMEOUT_MS, type RabbitMqSettings } from './rabbitmq-config.js'
import { connectError, rabbitMqReason, rabbitMqSecrets } from './rabbitmq-errors.js'

/** How long `close()` waits for the server to acknowledge a connection close before dropping the socket. */
const CLOSE_TIMEOUT_MS = 5_000

/** Waits between attempts to connect again after losing a connection, in ms: doubling from the first to the last. */
const RECONNECT_FIRST_MS = 250
const RECONNECT_MAX_MS = 5_000

/**
 * One AMQP connection that reopens on demand: `open()` returns the live connection, or
 * connects (again) when there is none. Herald keeps two, one to publish and one to consume,
 * as RabbitMQ advises: when a resource alarm blocks a publishing connection, RabbitMQ stops
 * reading from it, and acknowledgements sent on it would wait too.
 *
 * A connection that was open and is lost is connected again in the background, with a
 * growing pause between attempts (from 250 ms to 5 s), until it is back or closed; an
 * `open()` meanwhile waits for the next attempt rather than making one of its own. A lost
 * connection is logged once when it goes and once when it is back; what fails meanwhile
 * because of it (`lost` is true) need not be logged again.
 */
export class RabbitMqConnection {
  /** The URL with its password masked, for logs and errors. */
  readonly address: string
  readonly secrets: string[]
  readonly #url: string
  readonly #vhost: string
  readonly #socketOptions: SocketOptions
  readonly #log: Logger
  #model: ChannelModel | undefined
  #opening: Promise<ChannelModel> | undefined
  #closed = false
  #lost = false
  #blocked: string | undefined
  readonly #name: string
  #lostAt = 0
  /** The next background attempt to connect again, while one is scheduled or running. */
  #nextAttempt: Promise<ChannelModel> | undefined
  /** Aborted by `close()`: ends the pause before the next attempt. */
  readonly #closing = new AbortController()
  readonly #backoff = new Backoff(RECONNECT_FIRST_MS, RECONNECT_MAX_MS)

  constructor (settings: RabbitMqSettings, connectionName: string, log: Logger) {
    this.#name = connectionName
    this.address = redactUrl(settings.url)
    this.secrets = rabbitMqSecrets(settings.url, settings.options.socketOptions as Record<string, unknown> | undefined)
    rememberSecrets(this.secrets)
    this.#url = withHeartbeat(settings.url, settings.options.heartbeat)
    this.#vhost = vhostOf(settings.url)
    const given = settings.options.socketOptions ?? {}
    this.#socketOptions = {
      ...given,
      // amqplib keeps this socket timeout until the handshake is done: it bounds a server that accepts and never answers.
      timeout: given.timeout ?? settings.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
      clientProperties: { connection_name: connectionName, ...given.clientProperties }
    }
    this.#log = log
  }

  /** Whether a connection is open now. */
  get isOpen (): boolean {
    return this.#model !== undefined
  }

  /** Why RabbitMQ blocks this connection (a memory or disk alarm), if it does. */
  get blockedReason (): string | undefined {
    return this.#blocked
  }

  /** True while a connection that was open is lost and not back yet. */
  get lost (): boolean {
    return this.#lost
  }

  /**
   * The open connection, connecting first if there is none (after a loss: waiting for the
   * next attempt of the background reconnection). Rejects with a `BrokerError` naming the
   * (masked) address.
   */
  async open (): Promise<ChannelModel> {
    if (this.#closed) throw brokerClosedError('RabbitMQ')
    if (this.#model !== undefined) return this.#model
    if (this.#nextAttempt !== undefined) return await this.#nextAttempt
    return await this.#attempt()
  }

  async #attempt (): Promise<ChannelModel> {
    if (this.#model !== undefined) return this.#model
    this.#opening ??= this.#connect().finally(() => { this.#opening = undefined })
    return await this.#opening
  }

  /** Connects again after a pause, and again after a longer one if that fails, until connected or closed. */
  #reconnectLater (): void {
    if (this.#closed || this.#nextAttempt !== undefined || this.#model !== undefined) return
    const attempt = sleep(this.#backoff.next(), this.#closing.signal).then(async () => {
      if (this.#closed) throw brokerClosedError('RabbitMQ')
      return await this.#attempt()
    }).finally(() => { this.#nextAttempt = undefined })
    this.#nextAttempt = attempt
    attempt.catch(() => this.#reconnectLater())
  }

  /** A new channel on the open connection, with an `error` listener (amqplib throws an unheard one). */
  async channel (): Promise<Channel> {
    const channel = await (await this.open()).createChannel()
    this.#guard(channel)
    return channel
  }

  /** A new channel in confirm mode. */
  async confirmChannel (): Promise<ConfirmChannel> {
    const channel = await (await this.open()).createConfirmChannel()
    this.#guard(channel)
    return channel
  }

  /** Closes the connection; its channels close with it (their unacknowledged messages are requeued by the server). */
  async close (): Promise<void> {
    this.#closed = true
    this.#closing.abort()
    // A connection still opening is not waited for: #connect closes it if it opens, and
    // amqplib's socket timeout (connectTimeout) ends it if it does not.
    const model = this.#model
    this.#model = undefined
    if (model === undefined) return
    if (!await settledWithin(model.close(), CLOSE_TIMEOUT_MS)) {
      // The server did not answer (a dead peer the heartbeat has not noticed yet): drop the socket.
      (model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.()
    }
  }

  async #connect (): Promise<ChannelModel> {
    let model: ChannelModel
    try {
      model = await amqplib.connect(this.#url, this.#socketOptions)
    } catch (err) {
      const error = connectError(this.address, this.#vhost, err, this.secrets)
      if (this.#lost) this.#log.debug({ err: error.message }, 'RabbitMQ is still unreachable')
      throw error
    }
    if (this.#closed) {
      await model.close().catch(() => {})
      throw brokerClosedError('RabbitMQ')
    }
    let failure: unknown
    model.on('error', (err: unknown) => { failure = err })
    model.on('close', (err?: unknown) => {
      if (this.#model === model) this.#model = undefined
      this.#blocked = undefined
      if (this.#closed) return
      if (!this.#lost) {
        this.#lost = true
        this.#lostAt = Date.now()
        const reason = err ?? failure
        this.#log.error({ address: this.address, connection: this.#name, err: reason === undefined ? 'the connection closed' : rabbitMqReason(reason, this.secrets) }, 'lost the connection to RabbitMQ; reconnecting')
      }
      this.#reconnectLater()
    })
    model.on('blocked', (reason: string) => {
      this.#blocked = reason
      this.#log.warn({ address: this.address, reason }, 'RabbitMQ blocks this connection (a memory or disk alarm); publishing waits until it is unblocked')
    })
    model.on('unblocked', () => {
      this.#blocked = undefined
      this.#log.info({ address: this.address }, 'RabbitMQ unblocked the connection')
    })
    model.on('handler-error', (err: unknown, event: string) => {
      this.#log.error({ err: rabbitMqReason(err, this.secrets), event }, 'unexpected error in a RabbitMQ connection listener')
    })
    this.#model = model
    this.#backoff.reset()
    if (this.#lost) {
      this.#lost = false
      this.#log.info({ address: this.address, connection: this.#name, seconds: Math.round((Date.now() - this.#lostAt) / 100) / 10 }, 'reconnected to RabbitMQ')
    }
    return model
  }

  #guard (channel: Channel): void {
    // Channel errors also reach whoever uses the channel through its 'close'; this keeps
    // an error event from crashing the process.
    channel.on('error', () => {})
    channel.on('handler-error', (err: unknown, event: string) => {
      this.#log.error({ err: rabbitMqReason(err, this.secrets), event }, 'unexpected error in a RabbitMQ channel listener')
    })
  }
}

/** Adds `heartbeat` to the URL's query (where amqplib reads it), unless the URL has one. */
function withHeartbeat (url: string, heartbeat: number | undefined): string {
  if (heartbeat === undefined) return url
  const parsed = new URL(url)
  if (parsed.searchParams.has('heartbeat')) return url
  parsed.searchParams.set('heartbeat', String(heartbeat))
  return parsed.toString()
}

function vhostOf (url: string): string {
  try {
    const path = new URL(url).pathname.slice(1)
    return path === '' ? '/' : decodeURIComponent(path)
  } catch {
    return '/'
  }
}
