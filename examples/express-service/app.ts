import express, { type Express } from 'express'
import { herald, emit } from 'herald/express'
import type { Messaging, MessagingOptions } from 'herald'

let nextUserId = 1

/**
 * The same service with Express: `herald()` once, `emit()` on the routes that emit. The
 * event is published from the body given to `res.json()`, before the response goes out.
 */
export function buildApp (options: { messaging?: Messaging } & MessagingOptions = {}): Express {
  const app = express()
  app.use(express.json())
  app.use(herald(options))

  app.post('/users', emit({ name: 'user.created', topic: 'user-events', keyField: 'id' }), async (req, res) => {
    const { email, name } = req.body as { email?: string, name?: string }
    if (typeof email !== 'string' || typeof name !== 'string') {
      res.status(400).json({ error: 'email and name are required' })
      return
    }
    res.status(201).json({ id: nextUserId++, email, name })
  })

  app.get('/health', async (req, res) => {
    const health = await req.messaging.health()
    res.status(health.ok ? 200 : 503).json(health)
  })

  return app
}
