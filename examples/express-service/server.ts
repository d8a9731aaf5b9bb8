// Run with `npx tsx examples/express-service/server.ts`.
import { buildApp } from './app.js'

const app = buildApp({ source: 'users-service' })
const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`users-service (express) listening on ${JSON.stringify(server.address())}`)
})
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.close())
