import { randomUUID } from 'node:crypto'
import type { Channel, ConsumeMessage } from 'amqplib'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { channelClosedError, rabbitMqReason, replyCode, topologyError } from './rabbitmq-errors.js'
import { decodeHeaders, DELIVERY_COUNT_HEADER, redeliveriesOf } from './rabbitmq-headers.js'
import { groupQueueName } from './rabbitmq-names.js'

/** RabbitMQ's largest prefetch count (a 16-bit field). */
const MAX_PREFETCH = 65_535
/** Waits between attempts to subscribe again after losing the channel or a consumer, in ms. */
const RETRY_FIRST_MS = 500
const RETRY_MAX_MS = 30_000

export interface RabbitMqSubscriptionDeps {
  connection: RabbitMqConnection
  exchange: string
  /** Arguments of every queue Herald declares (`x-queue-type`), or none. */
  queueArguments: Record<string, unknown> | undefined
  log: Logger
  /** Called once the subscription is closed, so the broker forgets it. */
  onClosed: () => void
}

/** A message received and not yet handed over (the subscription has `maxInFlight` out already). */
interface Waiting {
  channel: Channel
  topic: string
  queue: string
  msg: ConsumeMessage
}

type State = 'running' | 'paused' | 'closed'

/**
 * One group consuming its topics: one channel, one consumer per topic on the queue
 * `<topic>.<group>`, manual acknowledgement.
 *
 * RabbitMQ applies the prefetch count to each consumer (a channel-wide "global" prefetch is
 * deprecated and refused by RabbitMQ 4.3), so with several topics it may push up to
 * `maxInFlight` per topic; messages beyond `maxInFlight` wait here, unacknowledged and in
 * arrival order, until earlier ones settle. With one topic the server does all the limiting.
 *
 * If the channel closes under it (a lost connection, a delivery left unacknowledged past
 * the server's `consumer_timeout`) or the server cancels a consumer (its queue was deleted,
 * its node went down), this is logged and it declares its queues and consumes again, with a
 * growing pause, until it is paused or closed. Messages that were out on a lost channel are
 * requeued by the server; settling them afterwards fails (and they come again).
 */
export class RabbitMqSubscription implements Subscription {
  readonly #options: SubscribeOptions
  readonly #onDelivery: DeliveryHandler
  readonly #deps: RabbitMqSubscriptionDeps
  readonly #log: Logger
  /** Subscribed topic → its group queue. */
  readonly #queues: Map<string, string>
  #state: State = 'running'
  #channel: Channel | undefined
  /** Consumer tag → topic, for the consumers alive on `#channel`. */
  readonly #consumers = new Map<string, string>()
  #inFlight = 0
  /** Of `#inFlight`, those waiting for a retry: not counted against `maxInFlight`. */
  #retrying = 0
  #waiting: Waiting[] = []
  #idle: Array<() => void> = []
  #repairing: Promise<void> | undefined
  #wake: (() => void) | undefined
  #closing: Promise<void> | undefined

  constructor (options: SubscribeOptions, onDelivery: DeliveryHandler, deps: RabbitMqSubscriptionDeps) {
    this.#options = options
    this.#onDelivery = onDelivery
    this.#deps = deps
    this.#log = deps.log
    this.#queues = new Map(options.topics.map(topic => [topic, groupQueueName(topic, options.group)]))
  }

  /** Declares the queues (and the dead-letter queues) and starts consuming. Rejects if any of it fails. */
  async start (): Promise<void> {
    await this.#setUp()
  }

  async pause (): Promise<void> {
    if (this.#state !== 'running') return
    this.#state = 'paused'
    this.#wake?.()
    const channel = this.#channel
    const tags = [...this.#consumers.keys()]
    this.#consumers.clear()
    if (channel !== undefined) {
      // basic.cancel: no new deliveries. Messages already out stay ackable on this channel.
      await Promise.all(tags.map(async tag => await channel.cancel(tag).catch(() => {})))
    }
    this.#giveBackWaiting()
  }

  async close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.pause()
      this.#state = 'closed'
      if (this.#inFlight > 0) await new Promise<void>(resolve => this.#idle.push(resolve))
      await this.#repairing
      await this.#closeChannel()
      this.#deps.onClosed()
    })()
    await this.#closing
  }

  /** Closes at once, settled or not (the broker is closing): unacknowledged messages are requeued by the server. */
  async abort (): Promise<void> {
    this.#state = 'closed'
    this.#wake?.()
    this.#consumers.clear()
    this.#waiting = []
    for (const resolve of this.#idle.splice(0)) resolve()
    await this.#closeChannel()
    this.#deps.onClosed()
  }

  async #closeChannel (): Promise<void> {
    const channel = this.#channel
    this.#channel = undefined
    if (channel !== undefined) await channel.close().catch(() => {})
  }

  /** Opens a channel, declares every queue, and consumes each topic's queue. */
  async #setUp (): Promise<void> {
    const { connection } = this.#deps
    const channel = await connection.channel()
    let lost: unknown
    let closed = false
    channel.on('error', (err: unknown) => { lost = err })
    channel.on('close', () => {
      closed = true
      this.#channelLost(channel, lost)
    })
    try {
      // Messages waiting for a retry stay unacknowledged: room for them, so they never stop the flow.
      await channel.prefetch(Math.min(this.#options.maxInFlight + (this.#options.maxWaiting ?? 0), MAX_PREFETCH))
      await this.#declare(channel, [...this.#queues.keys()], true)
      if (closed) throw channelClosedError('the channel closed while subscribing', lost, connection.secrets)
      this.#channel = channel
      for (const topic of this.#queues.keys()) await this.#consume(channel, topic)
    } catch (err) {
      if (this.#channel === channel) this.#channel = undefined
      this.#consumers.clear()
      await channel.close().catch(() => {})
      throw err instanceof BrokerError ? err : topologyError(`could not subscribe group "${this.#options.group}" at ${connection.address}`, err, connection.secrets)
    }
  }

  /** Declares the exchange, the group queues of `topics` bound to it, and (with `deadLetters`) the dead-letter queues. */
  async #declare (channel: Channel, topics: string[], deadLetters: boolean): Promise<void> {
    const { exchange, queueArguments, connection } = this.#deps
    const declareQueue = async (queue: string, routingKey: string): Promise<void> => {
      try {
        await channel.assertQueue(queue, { durable: true, arguments: queueArguments })
        await channel.bindQueue(queue, exchange, routingKey)
      } catch (err) {
        throw topologyError(`could not declare the queue "${queue}" bound to "${routingKey}" on exchange "${exchange}"`, err, connection.secrets)
      }
    }
    try {
      await channel.assertExchange(exchange, 'topic', { durable: true })
    } catch (err) {
      throw topologyError(`could not declare the topic exchange "${exchange}"`, err, connection.secrets)
    }
    for (const topic of topics) await declareQueue(this.#queues.get(topic)!, topic)
    // The dead-letter queues exist from now on, so a dead letter is kept even before anyone reads it.
    if (deadLetters) for (const topic of this.#options.deadLetterTopics) await declareQueue(topic, topic)
  }

  async #consume (channel: Channel, topic: string): Promise<void> {
    const queue = this.#queues.get(topic)!
    const consumerTag = `herald.${this.#options.group}.${randomUUID()}`.slice(-255)
    this.#consumers.set(consumerTag, topic)
    try {
      await channel.consume(queue, (msg) => {
        if (msg === null) this.#cancelledByServer(channel, consumerTag, queue)
        else this.#received({ channel, topic, queue, msg })
      }, { noAck: false, consumerTag })
    } catch (err) {
      this.#consumers.delete(consumerTag)
      throw topologyError(`could not consume the queue "${queue}"`, err, this.#deps.connection.secrets)
    }
  }

  #received (w: Waiting): void {
    if (this.#state !== 'running' || w.channel !== this.#channel) {
      // Sent before the server took our basic.cancel: give it back untouched.
      nackQuietly(w)
      return
    }
    if (this.#inFlight - this.#retrying >= this.#options.maxInFlight) {
      this.#waiting.push(w)
      return
    }
    this.#handOver(w)
  }

  #handOver ({ channel, topic, queue, msg }: Waiting): void {
    this.#inFlight++
    const { headers, key } = decodeHeaders(msg.properties.headers as Record<string, unknown> | undefined)
    const id = `${queue}#${msg.fields.deliveryTag}`
    let settled = false
    let retrying = false
    const settle = async (how: 'ack' | 'release'): Promise<void> => {
      if (settled) return
      settled = true
      if (retrying) this.#retrying--
      try {
        if (how === 'ack') channel.ack(msg)
        else channel.nack(msg, false, true)
      } catch (err) {
        // The channel it came on is gone, and RabbitMQ requeued the message with it: it is
        // delivered again, which is all a release asks and all an ack can still get. The
        // channel's loss was logged once; one line per message would only repeat it.
        this.#log.debug({ messageId: id, err: rabbitMqReason(err, this.#deps.connection.secrets) }, `could not ${how === 'ack' ? 'acknowledge' : 'release'} the message: its channel is closed; RabbitMQ delivers it again`)
      } finally {
        this.#settled()
      }
    }
    const delivery: Delivery = {
      // The subscribed topic: the one the queue is bound to, whatever routing key a message
      // reached it with (a raw sendToQueue uses the queue's name).
      topic,
      value: msg.content,
      key,
      headers,
      redeliveries: redeliveriesOf(msg.fields.redelivered, msg.properties.headers as Record<string, unknown> | undefined),
      // Only a quorum queue counts; a classic queue's flag is also set by a release.
      redeliveriesCounted: (msg.properties.headers as Record<string, unknown> | undefined)?.[DELIVERY_COUNT_HEADER] !== undefined,
      id,
      ack: async () => await settle('ack'),
      release: async () => await settle('release'),
      waiting: (on) => {
        if (settled || retrying === on) return
        retrying = on
        this.#retrying += on ? 1 : -1
        if (on) this.#handOverWaiting()
      }
    }
    try {
      this.#onDelivery(delivery).catch((err: unknown) => {
        this.#log.error({ err: rabbitMqReason(err, []), messageId: id }, 'the delivery handler failed; the message will be delivered again')
      })
    } catch (err) {
      this.#log.error({ err: rabbitMqReason(err, []), messageId: id }, 'the delivery handler failed; the message will be delivered again')
    }
  }

  #settled (): void {
    this.#inFlight--
    this.#handOverWaiting()
    if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve()
  }

  /** Hands over received messages while there is room. */
  #handOverWaiting (): void {
    while (this.#inFlight - this.#retrying < this.#options.maxInFlight && this.#waiting.length > 0) {
      const next = this.#waiting.shift()!
      // A message from a channel that has closed was requeued by the server already.
      if (next.channel !== this.#channel) continue
      if (this.#state !== 'running') nackQuietly(next)
      else this.#handOver(next)
    }
  }

  #giveBackWaiting (): void {
    for (const w of this.#waiting.splice(0)) if (w.channel === this.#channel) nackQuietly(w)
  }

  #channelLost (channel: Channel, err: unknown): void {
    if (this.#channel !== channel) return
    this.#channel = undefined
    this.#consumers.clear()
    this.#waiting = this.#waiting.filter(w => w.channel !== channel)
    if (this.#state === 'closed') return
    const reason = err === undefined ? 'the channel or its connection closed' : rabbitMqReason(err, this.#deps.connection.secrets)
    const timedOut = replyCode(err) === 406 && /acknowledgement/i.test(reason)
    const hint = timedOut
      ? " (a message stayed unacknowledged longer than RabbitMQ's consumer_timeout: raise it on the server, or shorten the handler's retries and timeout)"
      : ''
    const held = this.#inFlight > 0 ? `; the ${this.#inFlight} message(s) being handled can no longer be acknowledged and will be delivered again` : ''
    if (this.#state === 'paused') {
      this.#log.warn({ group: this.#options.group, err: reason }, `the consumer channel closed while stopping${hint}${held}`)
      return
    }
    // Without a channel error the connection went, and the connection logs that once.
    const log = err === undefined ? this.#log.info.bind(this.#log) : this.#log.error.bind(this.#log)
    log({ group: this.#options.group, topics: this.#options.topics, err: reason }, `the consumer channel closed${hint}${held}; subscribing again`)
    this.#repair()
  }

  #cancelledByServer (channel: Channel, consumerTag: string, queue: string): void {
    if (!this.#consumers.delete(consumerTag) || channel !== this.#channel || this.#state !== 'running') return
    this.#log.error({ group: this.#options.group, queue }, `RabbitMQ cancelled the consumer of queue "${queue}" (the queue was deleted, or its node is down); declaring it and consuming again`)
    this.#repair()
  }

  /** Until every topic has a consumer again (or the subscription stops): a new channel if the old one is gone, else the missing consumers. */
  #repair (): void {
    if (this.#repairing !== undefined) return
    this.#repairing = (async () => {
      for (let pause = RETRY_FIRST_MS, attempt = 1; this.#state === 'running'; pause = Math.min(pause * 2, RETRY_MAX_MS), attempt++) {
        await this.#sleep(pause)
        if (this.#state !== 'running') return
        try {
          const channel = this.#channel
          if (channel === undefined) {
            await this.#setUp()
          } else {
            const consumed = new Set(this.#consumers.values())
            const missing = [...this.#queues.keys()].filter(topic => !consumed.has(topic))
            await this.#declare(channel, missing, false)
            for (const topic of missing) await this.#consume(channel, topic)
          }
          if (this.#state !== 'running') {
            // Paused while subscribing again: stop the consumers just made.
            await this.#cancelAll()
            return
          }
          this.#log.info({ group: this.#options.group, topics: this.#options.topics }, 'consuming again')
          return
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err)
          // While the connection is lost it says so itself; otherwise once per streak.
          if (attempt === 1 && !this.#deps.connection.lost) this.#log.warn({ group: this.#options.group, err: reason }, 'could not subscribe again yet; retrying')
          else this.#log.debug({ group: this.#options.group, err: reason, attempt }, 'could not subscribe again yet; retrying')
        }
      }
    })().finally(() => { this.#repairing = undefined })
  }

  async #cancelAll (): Promise<void> {
    const channel = this.#channel
    const tags = [...this.#consumers.keys()]
    this.#consumers.clear()
    if (channel !== undefined) await Promise.all(tags.map(async tag => await channel.cancel(tag).catch(() => {})))
  }

  async #sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    this.#wake = undefined
  }
}

function nackQuietly ({ channel, msg }: Waiting): void {
  try {
    channel.nack(msg, false, true)
  } catch {
    // The channel is gone, and the message with it back to the queue.
  }
}
