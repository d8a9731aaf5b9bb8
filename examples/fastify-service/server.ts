// Run with `npx tsx examples/fastify-service/server.ts` (broker from the environment;
// nothing set = the embedded broker, which only a worker in the same process can read:
// see examples/demo.ts).
import { buildApp } from './app.js'

const app = await buildApp({ source: 'users-service' })
await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
console.log(`users-service listening on ${app.server.address() !== null ? JSON.stringify(app.server.address()) : ''}`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => { void app.close() })
