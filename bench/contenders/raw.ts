// The raw-client contenders: `raw` sends Herald's bytes (envelope + headers, built by hand),
// `raw-bare` sends the order alone. Both consume with the careful raw loop of their broker.
// `raw-platformatic` is `raw` on Kafka with @platformatic/kafka instead of kafkajs.
import { answer, produce, publishLevels, envelope, keyOf, order, ready, sendAll, sendAtRate, Tally, type Task } from '../common.js'
import { kafkaRaw } from './kafka-raw.js'
import { rabbitmqRaw } from './rabbitmq-raw.js'
import { redisRaw } from './redis-raw.js'
import type { RawClient } from './raw-client.js'

/** The raw Kafka clients: kafkajs (Herald's own client), or @platformatic/kafka. */
export type KafkaClient = 'kafkajs' | 'platformatic'

async function client (broker: Task['broker'], kafkaClient: KafkaClient): Promise<RawClient> {
  if (kafkaClient === 'platformatic') {
    if (broker !== 'kafka') throw new Error(`raw-platformatic is a Kafka client: no ${broker}`)
    // Loaded only here: the other raw contenders' processes do not load a second Kafka client.
    return (await import('./kafka-platformatic.js')).kafkaPlatformatic()
  }
  if (broker === 'kafka') return kafkaRaw()
  if (broker === 'rabbitmq') return rabbitmqRaw()
  if (broker === 'redis') return redisRaw()
  throw new Error('the raw contenders need a real broker (kafka, rabbitmq or redis)')
}

/** Sends order `i` as the contender does: Herald's envelope and headers, or the bare order. */
function sender (raw: RawClient, task: Task, bare: boolean): (i: number) => Promise<void> {
  return async (i) => {
    const data = order(i)
    if (bare) return await raw.send(task.topic, keyOf(i), Buffer.from(JSON.stringify(data)), undefined)
    const { body, headers } = envelope(data)
    return await raw.send(task.topic, keyOf(i), body, headers)
  }
}

/** What a raw consumer hands on: the event's data, or the whole body of a bare message. */
function payloadOf (body: Buffer): unknown {
  const parsed = JSON.parse(body.toString('utf8')) as { data?: unknown, id?: unknown }
  return typeof parsed.id === 'string' && 'data' in parsed ? parsed.data : parsed
}

export async function run (task: Task, bare: boolean, kafkaClient: KafkaClient = 'kafkajs'): Promise<void> {
  const raw = await client(task.broker, kafkaClient)
  try {
    if (task.role === 'publish') {
      const send = sender(raw, task, bare)
      answer(await publishLevels(task.levels ?? [], send))
    } else if (task.role === 'produce') {
      answer(await produce(task.n, sender(raw, task, bare)))
    } else if (task.role === 'consume') {
      const tally = new Tally(task.n)
      await raw.consume(task.topic, task.group, body => tally.record(payloadOf(body)))
      ready()
      await tally.settle()
      answer(tally.summary())
    } else if (task.role === 'latency') {
      const tally = new Tally(task.n)
      await raw.consume(task.topic, task.group, body => tally.record(payloadOf(body)))
      const sent = await sendAtRate(task.n, task.rate ?? 500, sender(raw, task, bare))
      await tally.settle()
      answer({ ...tally.summary(), ...sent, latencies: tally.latencies.slice(task.warmup ?? 0) })
    } else {
      throw new Error(`raw contender: no role ${task.role}`)
    }
  } finally {
    await raw.close()
  }
}
