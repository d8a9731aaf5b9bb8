/**
 * The client libraries' own types that Herald's public options name (the pass-through
 * objects `kafka.client`/`producer`/`consumer`, `rabbitmq.socketOptions`, `redis.client`).
 *
 * kafkajs, amqplib and ioredis are optional peer dependencies: a project that uses one
 * broker installs one client. Each alias ends its comment with `@ts-ignore`, which the
 * emitted .d.ts keeps, so that a TypeScript project without that client (even with
 * `skipLibCheck: false`) compiles, the alias being `any` there; with the client installed
 * it is the client's exact type. Only the config files import these; the adapters, loaded
 * only when chosen, import their client directly.
 */

/**
 * kafkajs's `KafkaConfig`.
 * @ts-ignore kafkajs is an optional peer dependency */
export type KafkaClientConfig = import('kafkajs').KafkaConfig
/**
 * kafkajs's `ProducerConfig`.
 * @ts-ignore kafkajs is an optional peer dependency */
export type KafkaProducerConfig = import('kafkajs').ProducerConfig
/**
 * kafkajs's `ConsumerConfig`.
 * @ts-ignore kafkajs is an optional peer dependency */
export type KafkaConsumerConfig = import('kafkajs').ConsumerConfig
/**
 * kafkajs's `RetryOptions`.
 * @ts-ignore kafkajs is an optional peer dependency */
export type KafkaRetryOptions = import('kafkajs').RetryOptions
/**
 * amqplib's `SocketOptions`, given to `amqplib.connect()`.
 * @ts-ignore amqplib is an optional peer dependency */
export type AmqpSocketOptions = import('amqplib').SocketOptions
/**
 * ioredis's `RedisOptions`, given to `new Redis()`.
 * @ts-ignore ioredis is an optional peer dependency */
export type IORedisOptions = import('ioredis').RedisOptions
