import type { DeliveryHandler, SubscribeOptions } from '../broker.js'

/**
 * The destination only one group reads, beside its topic: where a dead letter replayed to
 * that group goes on brokers whose groups share one log per topic (Redis streams, Kafka
 * topics), so the topic's other groups never see it again. RabbitMQ needs none: each group
 * has its own queue.
 */
export function groupRetryTopic (topic: string, group: string): string {
  return `${topic}.${group}.retry`
}

/**
 * The subscription of a group that also reads each topic's `groupRetryTopic`: the options
 * with those topics added, and a handler that hands their messages over under the topic's
 * own name (the runner, its dead letters and its metrics see the topic, not the retry topic).
 */
export function withGroupRetryTopics (options: SubscribeOptions, onDelivery: DeliveryHandler): { options: SubscribeOptions, onDelivery: DeliveryHandler } {
  const topicOf = new Map<string, string>()
  for (const t of options.topics) {
    const retry = groupRetryTopic(t, options.group)
    if (!options.topics.includes(retry)) topicOf.set(retry, t)
  }
  return {
    options: { ...options, topics: [...options.topics, ...topicOf.keys()] },
    onDelivery: async (delivery) => {
      const topic = topicOf.get(delivery.topic)
      await onDelivery(topic === undefined ? delivery : { ...delivery, topic })
    }
  }
}
