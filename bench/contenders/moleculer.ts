// Moleculer channels (0.14 with @moleculer/channels) on the broker's adapter: a service whose
// channel handler runs before the message is acknowledged, and `sendToChannel` to publish.
// maxInFlight is raised from its default of 1 to 100 (the raw loop's prefetch): the peer at
// its best reasonable setting, so beating it means something.
import { Middleware as Channels } from '@moleculer/channels'
import { ServiceBroker } from 'moleculer'
import { answer, produce, KAFKA_BROKERS, keyOf, order, RABBITMQ_URL, ready, REDIS_URL, sendAll, Tally, type Task } from '../common.js'

const MAX_IN_FLIGHT = 100

function adapter (task: Task): Record<string, unknown> {
  if (task.broker === 'kafka') return { type: 'Kafka', options: { kafka: { brokers: KAFKA_BROKERS }, maxInFlight: MAX_IN_FLIGHT } }
  if (task.broker === 'rabbitmq') return { type: 'AMQP', options: { amqp: { url: RABBITMQ_URL }, maxInFlight: MAX_IN_FLIGHT } }
  if (task.broker === 'redis') return { type: 'Redis', options: { redis: REDIS_URL, maxInFlight: MAX_IN_FLIGHT } }
  throw new Error('Moleculer channels: no adapter for the embedded broker in this bench')
}

export async function run (task: Task): Promise<void> {
  const broker = new ServiceBroker({ nodeID: `bench-${process.pid}`, logger: process.env.BENCH_DEBUG !== undefined, middlewares: [Channels({ adapter: adapter(task) })] })
  const tally = new Tally(task.n)
  if (task.role === 'consume') {
    broker.createService({
      name: 'bench',
      channels: {
        [task.topic]: {
          group: task.group,
          maxInFlight: MAX_IN_FLIGHT,
          kafka: { fromBeginning: true },
          redis: { startID: '0' },
          handler (payload: unknown) { tally.record(payload) }
        }
      }
    } as never)
  }
  await broker.start()
  try {
    if (task.role === 'consume') {
      ready()
      await tally.settle()
      answer(tally.summary())
    } else if (task.role === 'produce') {
      const send = broker as unknown as { sendToChannel: (name: string, payload: unknown, opts?: unknown) => Promise<void> }
      answer(await produce(task.n, async i => await send.sendToChannel(task.topic, order(i), { key: keyOf(i) })))
    } else {
      throw new Error(`moleculer contender: no role ${task.role}`)
    }
  } finally {
    await broker.stop()
  }
}
