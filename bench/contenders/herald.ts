// Herald at its defaults: `publishEvent` to publish, `startConsumers` with a `messageHandler`
// to consume. Imported from the built `dist/`, so the bench measures what the repo holds.
import { batchHandler, createMessaging, messageHandler, startConsumers, type Messaging, type MessagingOptions } from '../../dist/lib/index.js'
import { answer, produce, publishLevels, EVENT_NAME, KAFKA_BROKERS, keyOf, order, RABBITMQ_URL, ready, REDIS_URL, sendAll, sendAtRate, SOURCE, Tally, type BrokerName, type Task } from '../common.js'

/** Herald's options for a broker: only where it is and who is sending; everything else at its default. */
export function heraldOptions (broker: BrokerName): MessagingOptions {
  const where: MessagingOptions = broker === 'kafka'
    ? { bootstrapServers: KAFKA_BROKERS.join(',') }
    : broker === 'rabbitmq' ? { url: RABBITMQ_URL } : broker === 'redis' ? { url: REDIS_URL } : {}
  return { broker, ...where, source: SOURCE, logger: false }
}

/** `batch`: consume with a `batchHandler` at its defaults instead of a `messageHandler`. */
export async function run (task: Task, extra: MessagingOptions = {}, batch = false): Promise<void> {
  const messaging: Messaging = createMessaging({ ...heraldOptions(task.broker), ...extra })
  const publish = async (i: number): Promise<unknown> => await messaging.publishEvent(EVENT_NAME, order(i), { topic: task.topic, key: keyOf(i) })
  try {
    if (task.role === 'publish') {
      answer(await publishLevels(task.levels ?? [], publish))
    } else if (task.role === 'produce') {
      answer(await produce(task.n, publish))
    } else if (task.role === 'consume' || task.role === 'latency') {
      const tally = new Tally(task.n)
      const handler = batch
        ? batchHandler({ topic: task.topic, group: task.group }, async (items) => { for (const item of items) tally.record(item.message) })
        : messageHandler({ topic: task.topic, group: task.group }, async (data) => { tally.record(data) })
      const runner = await startConsumers({ messaging, handlers: [handler], signals: false })
      if (task.role === 'consume') {
        ready()
        await tally.settle()
        answer(tally.summary())
      } else {
        const sent = await sendAtRate(task.n, task.rate ?? 500, publish)
        await tally.settle()
        answer({ ...tally.summary(), ...sent, latencies: tally.latencies.slice(task.warmup ?? 0) })
      }
      await runner.stop()
    } else {
      throw new Error(`herald contender: no role ${task.role}`)
    }
  } finally {
    await messaging.close()
  }
}
