import { ConfigError } from '../../errors.js'

/**
 * How Herald's names map onto RabbitMQ:
 * - a topic is a routing key on the topic exchange;
 * - the queue of a group for a topic is `<topic>.<group>` (the convention of Spring Cloud
 *   Stream's RabbitMQ binder, which the dead-letter name `<topic>.<group>.dlq` follows);
 * - a dead-letter topic is a queue of exactly that name, bound with that name.
 *
 * Two pairs whose dotted names join the same way (`a.b` + `c`, `a` + `b.c`) would share one
 * queue, and each group would get the other's messages; pick topic and group names that do
 * not overlap like that. The one overlap Herald itself creates, a group named `dlq` or
 * ending in `.dlq` (its queue would be some dead-letter queue), is refused.
 */
export function groupQueueName (topic: string, group: string): string {
  return `${topic}.${group}`
}

const MAX_NAME_BYTES = 255

/**
 * Checks a topic (a routing key and a binding key). `*` and `#` are wildcards in a topic
 * exchange's bindings, so a queue bound with them would receive other topics' messages.
 */
export function checkTopicName (topic: string, option = 'topic'): void {
  if (typeof topic !== 'string' || topic === '') {
    throw new ConfigError(option, `must be a non-empty topic name, got ${JSON.stringify(topic)}`)
  }
  if (topic.includes('*') || topic.includes('#')) {
    throw new ConfigError(option, `"${topic}" cannot be used with RabbitMQ: "*" and "#" are wildcards in topic-exchange bindings, so its queue would receive other topics' messages; rename the topic without them (e.g. "${topic.replace(/[*#]/g, 'all')}")`)
  }
  if (topic.startsWith('amq.')) {
    throw new ConfigError(option, `"${topic}" cannot be used with RabbitMQ: queue names starting with "amq." are reserved, and Herald names queues after their topic; rename the topic`)
  }
  if (Buffer.byteLength(topic) > MAX_NAME_BYTES) {
    throw new ConfigError(option, `"${topic.slice(0, 40)}…" is longer than the ${MAX_NAME_BYTES} bytes RabbitMQ allows in a routing key; use a shorter topic name`)
  }
}

/** Checks a group and the queue names it makes with each topic. */
export function checkGroupName (group: string, topics: string[]): void {
  if (typeof group !== 'string' || group === '') {
    throw new ConfigError('group', `must be a non-empty group name, got ${JSON.stringify(group)}`)
  }
  if (group.includes('*') || group.includes('#')) {
    throw new ConfigError('group', `"${group}" cannot be used with RabbitMQ: "*" and "#" are wildcards in topic-exchange bindings; rename the group without them`)
  }
  if (group === 'dlq' || group.endsWith('.dlq')) {
    throw new ConfigError('group', `"${group}" cannot be used with RabbitMQ: its queue "<topic>.${group}" would be the dead-letter queue of another group; pick a group name that does not end in "dlq"`)
  }
  for (const topic of topics) {
    const queue = groupQueueName(topic, group)
    if (Buffer.byteLength(queue) > MAX_NAME_BYTES) {
      throw new ConfigError('group', `the queue name "${queue.slice(0, 40)}…" (topic "${topic}" + group "${group}") is longer than the ${MAX_NAME_BYTES} bytes RabbitMQ allows; use a shorter topic or group name`)
    }
  }
}
