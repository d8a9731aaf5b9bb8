// The worker's dependencies, handed to every handler through `ctx` by startConsumers'
// `context()`. Real code would put a database pool, an SMTP client, a payment SDK here.
import { NonRetriableError } from 'herald'

export interface Mailer {
  send(to: string, subject: string): Promise<void>
}

export interface Payments {
  /** Charges a card; throws when the gateway fails (retriable) or the card is declined (not). */
  charge(orderId: number, amount: number, card: string): Promise<string>
}

export interface Services {
  mailer: Mailer
  payments: Payments
}

/** A mailer that writes to the log instead of sending. */
export const logMailer: Mailer = {
  async send () {}
}

/** A payment gateway stand-in: declines the well-known test card 4000-0000-0000-0002. */
export const fakePayments: Payments = {
  async charge (orderId, amount, card) {
    if (card === '4000-0000-0000-0002') throw new NonRetriableError(`card declined for order ${orderId}`)
    return `ch_${orderId}_${Math.round(amount * 100)}`
  }
}
