import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib'
import type { Logger } from '../../logger.js'
import { InFlight } from '../shared/in-flight.js'
import { rabbitMqReason } from './rabbitmq-errors.js'
import { deliveryCounts, withRedeliveries } from './rabbitmq-headers.js'

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
