// Raw amqplib, as a careful engineer writes it. Producer: one confirm channel, every message
// persistent and mandatory on Herald's exchange (the same properties Herald sets), confirms
// awaited per message while others are in flight. Consumer: prefetch 100, ack after the handler.
import { randomUUID } from 'node:crypto'
import amqplib, { type ChannelModel, type ConfirmChannel, type Options } from '../amqplib.js'
import { HERALD_EXCHANGE, RABBITMQ_URL, SOURCE } from '../common.js'
import type { RawClient } from './raw-client.js'

const PREFETCH = 100

export function rabbitmqRaw (): RawClient {
  let connection: Promise<ChannelModel> | undefined
  let confirm: Promise<ConfirmChannel> | undefined
  const open = async (): Promise<ChannelModel> => await (connection ??= amqplib.connect(RABBITMQ_URL))
  const confirmChannel = async (): Promise<ConfirmChannel> => await (confirm ??= (async () => {
    const ch = await (await open()).createConfirmChannel()
    await ch.assertExchange(HERALD_EXCHANGE, 'topic', { durable: true })
    return ch
  })())

  return {
    async send (topic, key, body, headers) {
      const ch = await confirmChannel()
      const options: Options.Publish = headers === undefined
        ? { persistent: true, mandatory: true }
        : { persistent: true, mandatory: true, contentType: 'application/json', messageId: randomUUID(), timestamp: Math.floor(Date.now() / 1000), appId: SOURCE, headers: { ...headers, key } }
      await new Promise<void>((resolve, reject) => {
        ch.publish(HERALD_EXCHANGE, topic, body, options, (err: unknown) => { if (err === null || err === undefined) resolve(); else reject(err) })
      })
    },
    async consume (topic, group, handle) {
      const ch = await (await open()).createChannel()
      const queue = `${topic}.${group}`
      await ch.assertExchange(HERALD_EXCHANGE, 'topic', { durable: true })
      await ch.assertQueue(queue, { durable: true })
      await ch.bindQueue(queue, HERALD_EXCHANGE, topic)
      await ch.prefetch(PREFETCH)
      await ch.consume(queue, (msg) => {
        if (msg === null) return
        handle(msg.content)
        ch.ack(msg)
      }, { noAck: false })
    },
    async close () {
      if (connection !== undefined) await (await connection).close().catch(() => {})
    }
  }
}
