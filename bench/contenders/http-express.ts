// An Express service with one POST route: bare, with Herald's `emit()`, or naive (awaits one
// raw send per request). Prints BENCH_READY with its port; SIGTERM closes it.
import type { AddressInfo } from 'node:net'
import express from 'express'
import { emit, herald } from '../../dist/plugins/express.js'
import { answer, ready, type Task } from '../common.js'
import { heraldOptions } from './herald.js'
import { countMemoryTopic, EVENT, naiveSender } from './http-common.js'

export async function run (task: Task): Promise<void> {
  const app = express()
  app.use(express.json())
  let requestId = 0
  if (task.route === 'event') {
    const middleware = herald(heraldOptions(task.broker))
    app.use(middleware)
    app.post('/orders', emit({ ...EVENT, topic: task.topic }), (req, res) => {
      res.status(201).json({ ...(req.body as object), requestId: ++requestId })
    })
    app.get('/bench/count', async (req, res) => {
      res.json({ count: await countMemoryTopic(req.messaging, task.topic, Number(req.query.expect)) })
    })
  } else if (task.route === 'naive') {
    const send = await naiveSender(task.broker, task.topic)
    app.post('/orders', async (req, res) => {
      const data = { ...(req.body as object), requestId: ++requestId }
      await send(data)
      res.status(201).json(data)
    })
  } else {
    app.post('/orders', (req, res) => {
      res.status(201).json({ ...(req.body as object), requestId: ++requestId })
    })
  }
  const server = app.listen(0, '127.0.0.1')
  await new Promise<void>(resolve => server.once('listening', () => resolve()))
  ready({ port: (server.address() as AddressInfo).port })
  await new Promise<void>(resolve => process.once('SIGTERM', () => resolve()))
  server.closeAllConnections()
  await new Promise<void>(resolve => server.close(() => resolve()))
  answer({ requests: requestId })
}
