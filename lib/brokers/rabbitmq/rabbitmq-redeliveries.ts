import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib'
import type { Logger } from '../../logger.js'
import type { Delivery } from '../broker.js'
import { InFlight } from '../shared/in-flight.js'
import { rabbitMqReason } from './rabbitmq-errors.js'
import { decodeHeaders, deliveryCounts, withRedeliveries } from './rabbitmq-headers.js'

/** Puts a copy of a consumed message back on its queue; resolves `undefined` once confirmed, or the error. */
export type PutBack = (queue: string, content: Buffer, properties: MessageProperties, headers: Record<string, unknown>) => Promise<Error | undefined>

/** A message received on a channel of the subscription, not yet settled. */
export interface Held {
  channel: Channel
  topic: string
  queue: string
  msg: ConsumeMessage
  /** Its deliveries before this one that ended without a verdict (0 until counted). */
  redeliveries: number
}

/**
 * Counts, for one subscription, how many times each message was delivered without a
 * verdict, on classic queues too, where RabbitMQ counts nothing:
 * - A message that comes back `redelivered` was held by a consumer that died or lost its
 *   channel (Herald itself never requeues one it could not account for). It is put back on
 *   its queue as a copy carrying `herald-redeliveries` + 1, and the original acknowledged
 *   once the copy is confirmed: the count survives the next crash. The copy goes to the
 *   queue's tail.
 * - A message given back unhandled (a release at shutdown, or what a consumer holds
 *   besides a message that runs alone) is put back the same way with its count unchanged,
 *   so it uses up no attempt: a requeue (basic.nack) would make it look like a crash.
 * On a quorum queue, `x-delivery-count` counts the redeliveries, added to what a copy
 * carries (a copy is a new message, counted from 0 by the queue).
 */
export class Redeliveries {
  readonly #putBack: PutBack
  readonly #log: Logger
  readonly #secrets: string[]
  /** Copies being put back whose original is not acknowledged yet. */
  readonly chores = new InFlight()

  constructor (putBack: PutBack, log: Logger, secrets: string[]) {
    this.#putBack = putBack
    this.#log = log
    this.#secrets = secrets
  }

  /**
   * The message's earlier deliveries without a verdict, or `undefined` when it came back
   * from a consumer that died and is being put back with its count raised (it is not to be
   * handed over: its copy will be).
   */
  count (held: Held, onFailed: (held: Held) => void): number | undefined {
    const { msg } = held
    const counts = deliveryCounts(msg.properties.headers as Record<string, unknown> | undefined)
    if (counts.broker !== undefined) return counts.herald + counts.broker
    if (!msg.fields.redelivered) return counts.herald
    const raised = counts.herald + 1
    void this.putBack(held, raised, 'count its delivery').then((ok) => {
      // RabbitMQ took no copy (the publishing connection is down): hand the original over
      // with its count raised, rather than requeue it into a loop; only this delivery's
      // count is not kept if it kills the worker too.
      if (!ok) onFailed({ ...held, redeliveries: raised })
    })
    return undefined
  }

  /** Puts back, count unchanged, a message received and never handled; requeues it if that fails. */
  async giveBack (held: Held, why = 'give it back'): Promise<void> {
    if (!await this.putBack(held, held.redeliveries, why)) nackQuietly(held)
  }

  /**
   * Puts a copy with `redeliveries` back on the queue, then acknowledges the original.
   * Resolves true once done; false when the copy was not confirmed (the original is still
   * held, for the caller to decide).
   */
  async putBack (held: Held, redeliveries: number, why: string): Promise<boolean> {
    const settle = this.chores.add()
    try {
      const { msg } = held
      const err = await this.#putBack(held.queue, msg.content, msg.properties, withRedeliveries(msg.properties.headers as Record<string, unknown> | undefined, redeliveries))
      if (err !== undefined) {
        this.#log.warn({ queue: held.queue, err: rabbitMqReason(err, this.#secrets) }, `could not put the message back on its queue to ${why}`)
        return false
      }
      try {
        held.channel.ack(msg)
      } catch {
        // Its channel is gone: the original comes again besides the copy (seen twice, never lost).
      }
      return true
    } finally {
      settle()
    }
  }
}

/** basic.nack with requeue, for what cannot be put back: it will be counted as a crash. */
export function nackQuietly ({ channel, msg }: Held): void {
  try {
    channel.nack(msg, false, true)
  } catch {
    // The channel is gone, and the message with it back to the queue.
  }
}

/** What the subscription does when a handed-over message is settled or waits. */
export interface DeliveryHooks {
  ack: () => void
  release: () => Promise<void>
  /** Once, after the ack or release: `wasWaiting` when it was marked waiting until then. */
  settled: (wasWaiting: boolean) => void
  /** Each time the message starts or stops waiting for a retry, until settled. */
  waiting: (on: boolean) => void
  log: Logger
  secrets: string[]
}

/** The `Delivery` of a held message: settled once, by ack or release, whichever comes first. */
export function toDelivery (held: Held, hooks: DeliveryHooks): Delivery {
  const { topic, queue, msg } = held
  const { headers, key } = decodeHeaders(msg.properties.headers as Record<string, unknown> | undefined)
  const id = `${queue}#${msg.fields.deliveryTag}`
  let settled = false
  let retrying = false
  const settle = async (how: 'ack' | 'release'): Promise<void> => {
    if (settled) return
    settled = true
    try {
      if (how === 'ack') hooks.ack()
      else await hooks.release()
    } catch (err) {
      // The channel it came on is gone, and RabbitMQ requeued the message with it: it is
      // delivered again, which is all an ack can still get. The channel's loss was logged
      // once; one line per message would only repeat it.
      hooks.log.debug({ messageId: id, err: rabbitMqReason(err, hooks.secrets) }, 'could not acknowledge the message: its channel is closed; RabbitMQ delivers it again')
    } finally {
      hooks.settled(retrying)
    }
  }
  return {
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
      hooks.waiting(on)
    }
  }
}
