import { randomUUID } from 'node:crypto'
import type { Channel } from 'amqplib'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Backoff, sleep } from '../../time.js'
import type { Delivery, DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { InFlight } from '../shared/in-flight.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { channelClosedError, rabbitMqReason, replyCode, topologyError } from './rabbitmq-errors.js'
import { decodeHeaders } from './rabbitmq-headers.js'
import { groupQueueName } from './rabbitmq-names.js'
import { nackQuietly, Redeliveries, type Held, type PutBack } from './rabbitmq-redeliveries.js'

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
  /** Puts a copy of a consumed message back on its queue (the publisher's confirm channel). */
  putBack: PutBack
  log: Logger
  /** Called once the subscription is closed, so the broker forgets it. */
  onClosed: () => void
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
 * Redeliveries are counted on every queue type (see {@link Redeliveries}). A message
 * delivered before without a verdict (a worker may have died on it) runs alone: it is handed
 * over once nothing else is running, the consumers are cancelled and what this holds besides
 * is requeued first, so that if it kills the worker again only its own count grows; once it
 * settled (or its handler returned and it waits for a retry) consuming resumes.
 *
 * If the channel closes under it (a lost connection, a delivery left unacknowledged past
 * the server's `consumer_timeout`) or the server cancels a consumer (its queue was deleted,
 * its node went down), this is logged and it declares its queues and consumes again, with a
 * growing pause, until it is paused or closed. Messages that were out on a lost channel are
 * requeued by the server; settling them afterwards fails (and they come again, counted).
 */
export class RabbitMqSubscription implements Subscription {
  readonly #options: SubscribeOptions
  readonly #onDelivery: DeliveryHandler
  readonly #deps: RabbitMqSubscriptionDeps
  readonly #log: Logger
  readonly #redeliveries: Redeliveries
  /** Subscribed topic → its group queue. */
  readonly #queues: Map<string, string>
  #state: State = 'running'
  #channel: Channel | undefined
  /** Consumer tag → topic, for the consumers alive on `#channel`. */
  readonly #consumers = new Map<string, string>()
  readonly #inFlight = new InFlight()
  /** Of `#inFlight`, those waiting for a retry: not counted against `maxInFlight`. */
  #retrying = 0
  #waiting: Held[] = []
  /** The message delivered before that runs alone, while it does (from the moment it was picked). */
  #alone: Held | undefined
  /** Messages given back while `#alone` waits to start: it starts once they are all put back. */
  #clearing: Array<Promise<void>> = []
  #repairing: Promise<void> | undefined
  readonly #stop = new AbortController()
  #closing: Promise<void> | undefined

  constructor (options: SubscribeOptions, onDelivery: DeliveryHandler, deps: RabbitMqSubscriptionDeps) {
    this.#options = options
    this.#onDelivery = onDelivery
    this.#deps = deps
    this.#log = deps.log
    this.#redeliveries = new Redeliveries(deps.putBack, deps.log, deps.connection.secrets)
    this.#queues = new Map(options.topics.map(topic => [topic, groupQueueName(topic, options.group)]))
  }

  /** Declares the queues (and the dead-letter queues) and starts consuming. Rejects if any of it fails. */
  async start (): Promise<void> {
    await this.#setUp()
  }

  async pause (): Promise<void> {
    if (this.#state !== 'running') return
    this.#state = 'paused'
    this.#stop.abort()
    // basic.cancel: no new deliveries. Messages already out stay ackable on this channel.
    await this.#cancelAll()
    this.#giveBackWaiting()
  }

  async close (): Promise<void> {
    this.#closing ??= (async () => {
      await this.pause()
      this.#state = 'closed'
      await this.#inFlight.idle()
      await this.#redeliveries.chores.idle()
      await this.#repairing
      await this.#closeChannel()
      this.#deps.onClosed()
    })()
    await this.#closing
  }

  /** Closes at once, settled or not (the broker is closing): unacknowledged messages are requeued by the server. */
  async abort (): Promise<void> {
    this.#state = 'closed'
    this.#stop.abort()
    this.#consumers.clear()
    this.#waiting = []
    this.#inFlight.abandon()
    this.#redeliveries.chores.abandon()
    await this.#closeChannel()
    this.#deps.onClosed()
  }

  async #closeChannel (): Promise<void> {
    const channel = this.#channel
    this.#channel = undefined
    if (channel !== undefined) await channel.close().catch(() => {})
  }

  /** Messages waiting for a retry stay unacknowledged: room for them, so they never stop the flow. */
  get #prefetch (): number {
    return Math.min(this.#options.maxInFlight + (this.#options.maxWaiting ?? 0), MAX_PREFETCH)
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
      await channel.prefetch(this.#prefetch)
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
        else this.#received({ channel, topic, queue, msg, redeliveries: 0 })
      }, { noAck: false, consumerTag })
    } catch (err) {
      this.#consumers.delete(consumerTag)
      throw topologyError(`could not consume the queue "${queue}"`, err, this.#deps.connection.secrets)
    }
  }

  /** Consumes every topic that has no consumer on the live channel. */
  async #consumeMissing (): Promise<void> {
    const channel = this.#channel
    if (channel === undefined) return
    const consumed = new Set(this.#consumers.values())
    for (const topic of this.#queues.keys()) if (!consumed.has(topic)) await this.#consume(channel, topic)
  }

  #received (held: Held): void {
    // From a channel that closed: the server requeued it already.
    if (held.channel !== this.#channel) return
    const redeliveries = this.#redeliveries.count(held, (raised) => this.#accept(raised))
    if (redeliveries === undefined) return
    this.#accept({ ...held, redeliveries })
  }

  #accept (held: Held): void {
    if (held.channel !== this.#channel) return
    if (this.#state !== 'running') {
      // Sent before the server took our basic.cancel: give it back, its count unchanged.
      this.#giveBack(held)
    } else if (this.#alone !== undefined) {
      this.#clearing.push(this.#redeliveries.giveBack(held, 'run a message alone'))
    } else {
      this.#waiting.push(held)
      this.#handOverWaiting()
    }
  }

  /** Hands over received messages, in order, while there is room; one delivered before waits until nothing else runs, then runs alone. */
  #handOverWaiting (): void {
    while (this.#waiting.length > 0 && this.#alone === undefined && this.#state === 'running') {
      const next = this.#waiting[0]!
      if (next.channel !== this.#channel) {
        this.#waiting.shift()
        continue
      }
      const active = this.#inFlight.count - this.#retrying
      if (next.redeliveries > 0) {
        if (active > 0) return
        this.#waiting.shift()
        this.#runAlone(next)
        return
      }
      if (active >= this.#options.maxInFlight) return
      this.#handOver(this.#waiting.shift()!)
    }
  }

  /**
   * Cancels the consumers, puts back what else this holds (count unchanged: if `held` stops
   * the worker, nothing else is held), then hands `held` over; consuming resumes when it
   * settles or waits for a retry.
   */
  #runAlone (held: Held): void {
    this.#alone = held
    void (async () => {
      await this.#cancelAll()
      for (const other of this.#waiting.splice(0)) this.#clearing.push(this.#redeliveries.giveBack(other, 'run a message alone'))
      while (this.#clearing.length > 0) await Promise.all(this.#clearing.splice(0))
      // A round trip on the channel: the acknowledgements of what was put back have reached
      // RabbitMQ (frames are handled in order) before a handler that may end the process runs.
      await held.channel.prefetch(this.#prefetch).catch(() => {})
      if (this.#state !== 'running' || held.channel !== this.#channel) {
        this.#alone = undefined
        this.#accept(held)
        return
      }
      this.#log.info({ group: this.#options.group, queue: held.queue, redeliveries: held.redeliveries }, 'a message delivered before without being settled runs alone, so that if it stops the worker again only its own count grows')
      this.#handOver(held, () => {
        if (this.#alone !== held) return
        this.#alone = undefined
        if (this.#state === 'running') this.#consumeMissing().catch(() => this.#repair())
      })
    })()
  }

  #handOver (held: Held, onRunAloneOver?: () => void): void {
    const { channel, topic, queue, msg } = held
    const counted = this.#inFlight.add()
    const { headers, key } = decodeHeaders(msg.properties.headers as Record<string, unknown> | undefined)
    const id = `${queue}#${msg.fields.deliveryTag}`
    let settled = false
    let retrying = false
    const settle = async (how: 'ack' | 'release'): Promise<void> => {
      if (settled) return
      settled = true
      if (retrying) this.#retrying--
      try {
        if (how === 'release') {
          // Put back with its count unchanged: a release uses up no attempt (a requeue would come back as a crash).
          if (!await this.#redeliveries.putBack(held, held.redeliveries, 'release it')) nackQuietly(held)
        } else {
          channel.ack(msg)
        }
      } catch (err) {
        // The channel it came on is gone, and RabbitMQ requeued the message with it: it is
        // delivered again, which is all an ack can still get. The channel's loss was logged
        // once; one line per message would only repeat it.
        this.#log.debug({ messageId: id, err: rabbitMqReason(err, this.#deps.connection.secrets) }, 'could not acknowledge the message: its channel is closed; RabbitMQ delivers it again')
      } finally {
        counted()
        onRunAloneOver?.()
        this.#handOverWaiting()
      }
    }
    const delivery: Delivery = {
      // The subscribed topic: the one the queue is bound to, whatever routing key a message
      // reached it with (a raw sendToQueue uses the queue's name).
      topic,
      value: msg.content,
      key,
      headers,
      redeliveries: held.redeliveries,
      redeliveriesCounted: true,
      id,
      ack: async () => await settle('ack'),
      release: async () => await settle('release'),
      waiting: (on) => {
        if (settled || retrying === on) return
        retrying = on
        this.#retrying += on ? 1 : -1
        // Its handler returned: it did not stop the worker this time.
        if (on) onRunAloneOver?.()
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

  /** Gives back, count unchanged, a message received and never handed over. */
  #giveBack (held: Held): void {
    void this.#redeliveries.giveBack(held)
  }

  #giveBackWaiting (): void {
    for (const held of this.#waiting.splice(0)) if (held.channel === this.#channel) this.#giveBack(held)
  }

  #channelLost (channel: Channel, err: unknown): void {
    if (this.#channel !== channel) return
    this.#channel = undefined
    this.#consumers.clear()
    this.#waiting = this.#waiting.filter(w => w.channel !== channel)
    if (this.#alone?.channel === channel) this.#alone = undefined
    if (this.#state === 'closed') return
    const reason = err === undefined ? 'the channel or its connection closed' : rabbitMqReason(err, this.#deps.connection.secrets)
    const timedOut = replyCode(err) === 406 && /acknowledgement/i.test(reason)
    const hint = timedOut
      ? " (a message stayed unacknowledged longer than RabbitMQ's consumer_timeout: raise it on the server, or shorten the handler's retries and timeout)"
      : ''
    const inFlight = this.#inFlight.count
    const held = inFlight > 0 ? `; the ${inFlight} message(s) being handled can no longer be acknowledged and will be delivered again` : ''
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
      const backoff = new Backoff(RETRY_FIRST_MS, RETRY_MAX_MS)
      for (let attempt = 1; this.#state === 'running'; attempt++) {
        if (!await sleep(backoff.next(), this.#stop.signal)) return
        try {
          const channel = this.#channel
          if (channel === undefined) {
            await this.#setUp()
          } else {
            const consumed = new Set(this.#consumers.values())
            const missing = [...this.#queues.keys()].filter(topic => !consumed.has(topic))
            await this.#declare(channel, missing, false)
            if (this.#alone === undefined) await this.#consumeMissing()
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
}
