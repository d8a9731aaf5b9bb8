import { Type, type Static } from '@sinclair/typebox'
import { consumer, onEvent, type Context, type Event } from 'herald'
import type { Services } from '../services.js'

const OrderPlaced = Type.Object({
  id: Type.Number(),
  userId: Type.Number(),
  total: Type.Number({ minimum: 0 }),
  card: Type.String()
})
type OrderPlaced = Static<typeof OrderPlaced>

// Class style: one group reading several topics, events dispatched to methods by name.
// A gateway failure is retried with backoff; a declined card (NonRetriableError) goes
// straight to the dead-letter topic order-events.billing.dlq.
@consumer('billing', { topics: ['order-events', 'user-events'] })
export class Billing {
  @onEvent('order.placed', { schema: OrderPlaced, maxRetries: 3, retryDelay: 200 })
  async chargeOrder (event: Event<OrderPlaced>, ctx: Context<Services>): Promise<void> {
    const order = event.data
    const charge = await ctx.payments.charge(order.id, order.total, order.card)
    ctx.logger.info({ orderId: order.id, charge }, `order ${order.id} charged ${order.total} (${charge}), attempt ${ctx.attempt}`)
  }

  @onEvent('user.deleted')
  async closeAccount (event: Event<{ id: number }>, ctx: Context): Promise<void> {
    ctx.logger.info({ userId: event.data.id }, `billing account of user ${event.data.id} closed`)
  }
}
