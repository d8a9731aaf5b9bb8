import type { Channel, GetMessage, MessageProperties } from 'amqplib'
import { BrokerError, ErrorCode } from '../../errors.js'
import type { DeadLetterCursor, StoredMessage } from '../broker.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { decodeHeaders, encodeHeaders } from './rabbitmq-headers.js'
import { groupQueueName } from './rabbitmq-names.js'

/** Sends a message straight to a queue with a confirm; resolves with the error, if any. */
export type SendToQueue = (queue: string, content: Buffer, properties: MessageProperties, headers: Record<string, unknown>) => Promise<Error | undefined>

/**
 * A pass over a dead-letter queue on a channel of its own: `basic.get` without ack, so
 * every letter read stays unacknowledged, held by this channel, until `remove()` acks it
 * or `close()` closes the channel, which gives back the rest: RabbitMQ requeues them in
 * their place (they come back with the `redelivered` flag). Ids are places in this pass
 * (1, 2, …). A replay sends the letter to the group's own queue `<topic>.<group>`
 * (default exchange, confirmed), then acks it.
 */
export async function rabbitMqDeadLetters (connection: RabbitMqConnection, sendToQueue: SendToQueue, queue: string): Promise<DeadLetterCursor> {
  let channel: Channel = await connection.channel()
  /** The letters ready when the pass began: the most it reads. */
  let remaining: number
  try {
    remaining = (await channel.checkQueue(queue)).messageCount
  } catch (err) {
    throw new BrokerError(`there is no dead-letter queue "${queue}" on RabbitMQ at ${connection.address}: check the topic and group (Herald declares it when the group first subscribes)`, { code: ErrorCode.UnknownTopic, retriable: false, cause: err })
  }
  // The failed check closed that channel.
  channel = await connection.channel()
  const held = new Map<string, GetMessage>()
  let n = 0
  return {
    total: remaining,
    read: async (limit) => {
      const out: StoredMessage[] = []
      while (out.length < limit && remaining > 0) {
        remaining--
        const message = await channel.get(queue, { noAck: false })
        if (message === false) break
        const id = String(++n)
        held.set(id, message)
        const { headers, key } = decodeHeaders(message.properties.headers as Record<string, unknown> | undefined)
        out.push({ id, value: message.content, key, headers })
      }
      return out
    },
    remove: async (stored) => {
      const message = held.get(stored.id)
      if (message === undefined) return
      held.delete(stored.id)
      channel.ack(message)
    },
    redeliver: async (message, group) => {
      const target = groupQueueName(message.topic, group)
      const err = await sendToQueue(target, message.value, {} as unknown as MessageProperties, encodeHeaders(message.headers, message.key))
      if (err !== undefined) throw err
    },
    close: async () => {
      // Acks written before the close are done once it is: RabbitMQ handles a channel's frames in order.
      await channel.close().catch(() => {})
    }
  }
}
