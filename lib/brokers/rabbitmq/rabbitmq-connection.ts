import amqplib, { type Channel, type ChannelModel, type ConfirmChannel, type SocketOptions } from 'amqplib'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { redactUrl } from '../../redact.js'
import { DEFAULT_CONNECT_TIMEOUT_MS, type RabbitMqSettings } from './rabbitmq-config.js'
import { connectError, rabbitMqReason, rabbitMqSecrets } from './rabbitmq-errors.js'

/** How long `close()` waits for the server to acknowledge a connection close before dropping the socket. */
const CLOSE_TIMEOUT_MS = 5_000

/**
 * One AMQP connection that reopens on demand: `open()` returns the live connection, or
 * connects (again) when there is none. Herald keeps two, one to publish and one to consume,
 * as RabbitMQ advises: when a resource alarm blocks a publishing connection, RabbitMQ stops
 * reading from it, and acknowledgements sent on it would wait too.
 *
 * A lost connection is logged once, when it goes, and once more when it is back.
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

  constructor (settings: RabbitMqSettings, connectionName: string, log: Logger) {
    this.address = redactUrl(settings.url)
    this.secrets = rabbitMqSecrets(settings.url, settings.options.socketOptions as Record<string, unknown> | undefined)
    this.#url = withHeartbeat(settings.url, settings.options.heartbeat)
    this.#vhost = vhostOf(settings.url)
    const given = settings.options.socketOptions ?? {}
    this.#socketOptions = {
      ...given,
      timeout: given.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
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

  /** The open connection, connecting first if there is none. Rejects with a `BrokerError` naming the (masked) address. */
  async open (): Promise<ChannelModel> {
    if (this.#closed) throw new BrokerError('the RabbitMQ connection is closed; create a new Messaging instance', { retriable: false })
    if (this.#model !== undefined) return this.#model
    this.#opening ??= this.#connect().finally(() => { this.#opening = undefined })
    return await this.#opening
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
    const model = this.#model ?? await this.#opening?.catch(() => undefined)
    this.#model = undefined
    if (model === undefined) return
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(true), CLOSE_TIMEOUT_MS) })
    const closed = model.close().then(() => false, () => false)
    if (await Promise.race([closed, timedOut])) {
      // The server did not answer (a dead peer the heartbeat has not noticed yet): drop the socket.
      (model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.()
    }
    clearTimeout(timer)
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
      throw new BrokerError('the RabbitMQ connection is closed; create a new Messaging instance', { retriable: false })
    }
    let failure: unknown
    model.on('error', (err: unknown) => { failure = err })
    model.on('close', (err?: unknown) => {
      if (this.#model === model) this.#model = undefined
      this.#blocked = undefined
      if (this.#closed || this.#lost) return
      this.#lost = true
      const reason = err ?? failure
      this.#log.error({ address: this.address, err: reason === undefined ? 'the connection closed' : rabbitMqReason(reason, this.secrets) }, 'lost the connection to RabbitMQ; reconnecting when it is next needed')
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
    if (this.#lost) {
      this.#lost = false
      this.#log.info({ address: this.address }, 'reconnected to RabbitMQ')
    }
    this.#model = model
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
