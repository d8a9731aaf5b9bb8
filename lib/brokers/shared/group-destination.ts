/**
 * The destination only one group reads, beside its topic: where a dead letter replayed to
 * that group goes on brokers whose groups share one log per topic (Redis streams, Kafka
 * topics), so the topic's other groups never see it again. RabbitMQ needs none: each group
 * has its own queue.
 */
export function groupRetryTopic (topic: string, group: string): string {
  return `${topic}.${group}.retry`
}
