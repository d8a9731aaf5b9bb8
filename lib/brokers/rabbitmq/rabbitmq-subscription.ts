import { randomUUID } from 'node:crypto'
import type { Channel } from 'amqplib'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Backoff, sleep } from '../../time.js'
import type { DeliveryHandler, SubscribeOptions, Subscription } from '../broker.js'
import { InFlight } from '../shared/in-flight.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { channelClosedError, channelLossReason, rabbitMqReason, topologyError } from './rabbitmq-errors.js'
import { groupQueueName } from './rabbitmq-names.js'
import { declareTopology } from './rabbitmq-topology.js'
import { nackQuietly, Redeliveries, toDelivery, type Held, type PutBack } from './rabbitmq-redeliveries.js'

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
 * `<topic>.<group>`, manual acknowledgement. RabbitMQ applies the prefetch count per
 * consumer (a "global" one is refused by RabbitMQ 4.3), so with several topics messages
 * beyond `maxInFlight` wait here, unacknowledged and in arrival order.
 *
 * Redeliveries are counted on every queue type (see {@link Redeliveries}). A message
 * delivered before without a verdict (a worker may have died on it) runs alone: once nothing
 * else runs, the consumers are cancelled and what this holds besides is put back, so that if
 * it kills the worker again only its own count grows; consuming resumes once it settled (or
 * its handler returned and it waits for a retry).
 *
 * If the channel closes under it (a lost connection, `consumer_timeout`) or the server
 * cancels a consumer (its queue was deleted), this is logged and it declares its queues and
 * consumes again, with a growing pause, until paused or closed. Messages that were out on a
 * lost channel are requeued by the server, and come again, counted.
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
  async start (): Promise<void> { await this.#setUp() }

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
    const bindings = topics.map(topic => ({ queue: this.#queues.get(topic)!, routingKey: topic }))
    // The dead-letter queues exist from now on, so a dead letter is kept even before anyone reads it.
    if (deadLetters) bindings.push(...this.#options.deadLetterTopics.map(topic => ({ queue: topic, routingKey: topic })))
    const { exchange, queueArguments, connection } = this.#deps
    await declareTopology(channel, { exchange, queueArguments, secrets: connection.secrets }, bindings)
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

  /** Consumes every topic that has no consumer on the live channel (declaring its queue first, after the server cancelled one). */
  async #consumeMissing (declare = false): Promise<void> {
    const channel = this.#channel
    if (channel === undefined) return
    const consumed = new Set(this.#consumers.values())
    const missing = [...this.#queues.keys()].filter(topic => !consumed.has(topic))
    if (declare) await this.#declare(channel, missing, false)
    for (const topic of missing) await this.#consume(channel, topic)
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
      void this.#redeliveries.giveBack(held)
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
    const counted = this.#inFlight.add()
    const delivery = toDelivery(held, {
      ack: () => held.channel.ack(held.msg),
      // Put back with its count unchanged: a release uses up no attempt (a requeue would come back as a crash).
      release: async () => { if (!await this.#redeliveries.putBack(held, held.redeliveries, 'release it')) nackQuietly(held) },
      settled: (wasWaiting) => {
        if (wasWaiting) this.#retrying--
        counted()
        onRunAloneOver?.()
        this.#handOverWaiting()
      },
      waiting: (on) => {
        this.#retrying += on ? 1 : -1
        // Its handler returned: it did not stop the worker this time.
        if (on) onRunAloneOver?.()
        if (on) this.#handOverWaiting()
      },
      log: this.#log,
      secrets: this.#deps.connection.secrets
    })
    const failed = (err: unknown): void => this.#log.error({ err: rabbitMqReason(err, []), messageId: delivery.id }, 'the delivery handler failed; the message will be delivered again')
    try {
      this.#onDelivery(delivery).catch(failed)
    } catch (err) {
      failed(err)
    }
  }

  /** Gives back, count unchanged, what was received and never handed over. */
  #giveBackWaiting (): void {
    for (const held of this.#waiting.splice(0)) if (held.channel === this.#channel) void this.#redeliveries.giveBack(held)
  }

  #channelLost (channel: Channel, err: unknown): void {
    if (this.#channel !== channel) return
    this.#channel = undefined
    this.#consumers.clear()
    this.#waiting = this.#waiting.filter(w => w.channel !== channel)
    if (this.#alone?.channel === channel) this.#alone = undefined
    if (this.#state === 'closed') return
    const { reason, text } = channelLossReason(err, this.#deps.connection.secrets, this.#inFlight.count)
    if (this.#state === 'paused') {
      this.#log.warn({ group: this.#options.group, err: reason }, `the consumer channel closed while stopping${text}`)
      return
    }
    // Without a channel error the connection went, and the connection logs that once.
    this.#log[err === undefined ? 'info' : 'error']({ group: this.#options.group, topics: this.#options.topics, err: reason }, `the consumer channel closed${text}; subscribing again`)
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
          if (this.#channel === undefined) await this.#setUp()
          else if (this.#alone === undefined) await this.#consumeMissing(true)
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
