// What the adapter tests publish and how they collect what a subscription hands over.
import type { Delivery, DeliveryHandler, OutgoingMessage } from '../../lib/brokers/broker.js'

/** A message with a text body. */
export const message = (topic: string, value: string, key?: string, headers: Record<string, string> = {}): OutgoingMessage =>
  ({ topic, value: Buffer.from(value), key, headers })

/** A handler that records deliveries and settles them as told (ack by default). */
export function collector (handle: (d: Delivery) => Promise<void> = async d => await d.ack()): { deliveries: Delivery[], values: () => string[], handler: DeliveryHandler } {
  const deliveries: Delivery[] = []
  return {
    deliveries,
    values: () => deliveries.map(d => d.value.toString()),
    handler: async d => {
      deliveries.push(d)
      await handle(d)
    }
  }
}
