import { messageHandler, DLQ_HEADERS } from 'herald'

// A dead-letter topic is an ordinary topic: this handler alerts on every order that
// billing gave up on, with the reason Herald recorded.
export default messageHandler(
  { topic: 'order-events.billing.dlq', group: 'billing-alerts' },
  async function alertOnDeadLetter (message, ctx) {
    const reason = ctx.headers[DLQ_HEADERS.reason]
    const attempts = ctx.headers[DLQ_HEADERS.attempts]
    ctx.logger.warn({ reason, attempts }, `dead letter from ${ctx.headers[DLQ_HEADERS.group]}: ${JSON.stringify(message)} (${reason}, after ${attempts} attempt(s))`)
  })
