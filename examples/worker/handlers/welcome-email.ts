import { Type } from '@sinclair/typebox'
import { messageHandler, type Context } from 'herald'
import type { Services } from '../services.js'

const UserCreated = Type.Object({
  id: Type.Number(),
  email: Type.String({ minLength: 3 }),
  name: Type.String()
})

// Function style: one topic, the message validated against a TypeBox schema and typed.
export default messageHandler(
  { topic: 'user-events', group: 'mailer', schema: UserCreated, maxRetries: 5, retryDelay: 500 },
  async function sendWelcomeEmail (user, ctx: Context<Services>) {
    if (ctx.event?.name !== 'user.created') return
    await ctx.mailer.send(user.email, `Welcome, ${user.name}!`)
    ctx.logger.info({ email: user.email }, `welcome email sent to ${user.email}`)
  })
