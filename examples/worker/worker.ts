// The worker: configure the broker (from the environment: MESSAGING_BROKER, KAFKA_BOOTSTRAP_SERVERS,
// RABBITMQ_URL, REDIS_URL; nothing set = the embedded broker), then load every handler in ./handlers.
// Run it with `npx tsx examples/worker/worker.ts`. SIGTERM / Ctrl-C stop it gracefully.
import { fileURLToPath } from 'node:url'
import { configureMessaging, startConsumers, type Messaging, type Runner } from 'herald'
import { fakePayments, logMailer, type Services } from './services.js'

export const handlersDir = fileURLToPath(new URL('./handlers', import.meta.url))

/** Starts every handler of ./handlers on `messaging`, with `services` in each handler's ctx. */
export async function startWorker (messaging: Messaging, services: Services = { mailer: logMailer, payments: fakePayments }): Promise<Runner> {
  return await startConsumers({ dir: handlersDir, messaging, context: () => services, signals: false })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const messaging = configureMessaging({ source: 'worker', logger: undefined })
  const runner = await startWorker(messaging)
  for (const c of runner.consumers) console.log(`worker: ${c.name} consumes ${c.topics.join(', ')} in group ${c.group}`)
  const stop = async (): Promise<void> => {
    await runner.stop()
    await messaging.close()
  }
  process.once('SIGTERM', () => { void stop() })
  process.once('SIGINT', () => { void stop() })
}
