import type { TopicLag } from '../broker.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { groupQueueName } from './rabbitmq-names.js'

/**
 * A group's lag on each topic: the messages waiting in its queue `<topic>.<group>`, from
 * `checkQueue` (AMQP's passive queue.declare). That count is the messages ready to be
 * delivered; messages already delivered to a consumer and not yet acknowledged are not in
 * it (AMQP does not tell them; the management API does). A queue that does not exist is
 * left out. One short-lived channel per scrape: a missing queue closes the channel it was
 * asked on, which must not be one that consumes or publishes.
 */
export async function rabbitMqLag (connection: RabbitMqConnection, group: string, topics: readonly string[]): Promise<TopicLag[]> {
  const out: TopicLag[] = []
  for (const topic of topics) {
    const channel = await connection.channel()
    try {
      const { messageCount } = await channel.checkQueue(groupQueueName(topic, group))
      out.push({ topic, messages: messageCount })
    } catch {
      continue
    } finally {
      await channel.close().catch(() => {})
    }
  }
  return out
}
