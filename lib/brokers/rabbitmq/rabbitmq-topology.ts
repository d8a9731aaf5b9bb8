import type { Channel } from 'amqplib'
import { topologyError } from './rabbitmq-errors.js'

export interface Topology {
  exchange: string
  /** Arguments of every queue Herald declares (`x-queue-type`), or none. */
  queueArguments: Record<string, unknown> | undefined
  secrets: string[]
}

/**
 * Declares the durable topic exchange and each durable queue bound to it with its routing
 * key (a group queue: its topic; a dead-letter queue: its own name). Rejects with a
 * `BrokerError` naming what could not be declared and why (a 406: it exists with other settings).
 */
export async function declareTopology (channel: Channel, topology: Topology, bindings: Array<{ queue: string, routingKey: string }>): Promise<void> {
  const { exchange, queueArguments, secrets } = topology
  try {
    await channel.assertExchange(exchange, 'topic', { durable: true })
  } catch (err) {
    throw topologyError(`could not declare the topic exchange "${exchange}"`, err, secrets)
  }
  for (const { queue, routingKey } of bindings) {
    try {
      await channel.assertQueue(queue, { durable: true, arguments: queueArguments })
      await channel.bindQueue(queue, exchange, routingKey)
    } catch (err) {
      throw topologyError(`could not declare the queue "${queue}" bound to "${routingKey}" on exchange "${exchange}"`, err, secrets)
    }
  }
}
