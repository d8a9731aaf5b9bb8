import type { Static, TSchema } from '@sinclair/typebox'
import type { Event } from '../event.js'
import type { Logger } from '../logger.js'
import type { Messaging } from '../messaging.js'

/** What a handler's second argument carries, besides whatever `context()` returned. */
export interface HandlerContext {
  /** The topic (Kafka topic, RabbitMQ routing key, Redis stream) the message came from. */
  topic: string
  /** The message key, when it has one. */
  key: string | undefined
  /** The message headers, values decoded to strings. */
  headers: Record<string, string>
  /** 1 on the first delivery, then 2, 3… for retries (and redeliveries the broker reports). */
  attempt: number
  /** The event, when the message is a Herald envelope (or carries an `event-name` header). Use `event.id` to make handlers idempotent. */
  event: Event | undefined
  /** The broker's name for the message's position (`topic/partition@offset`, a stream id, …). */
  messageId: string
  /** A logger bound to the topic, group and message. */
  logger: Logger
  /** Aborted when the handler's `timeout` expires or a shutdown stops waiting for it: stop work and return. */
  signal: AbortSignal
  /** The Messaging instance the consumer runs on (to publish follow-up events). */
  messaging: Messaging
}

/** The handler context with the fields your `context()` factory adds, e.g. `Context<{ db: Db }>`. */
export type Context<Extra extends object = {}> = HandlerContext & Extra

/** Retry and dead-letter behaviour of one handler. */
export interface RetryOptions {
  /** Retries after the first attempt. Default 3 (so at most 4 attempts). */
  maxRetries?: number
  /** Delay before the first retry, in ms. Default 1000. */
  retryDelay?: number
  /** `exponential` (default: retryDelay × 2^(retry-1)) or `fixed`. */
  backoff?: 'exponential' | 'fixed'
  /** Cap on one retry delay, in ms. Default 60000. */
  maxRetryDelay?: number
  /** Where a message goes after its last attempt. Default `<topic>.<group>.dlq`; `false` drops it with an error log. */
  deadLetter?: string | false
  /** Time one attempt may take, in ms; then `ctx.signal` aborts and the attempt counts as failed. Default none. */
  timeout?: number
  /**
   * A retry whose delay is at least this (ms) is stored in the broker instead of waiting in
   * the process, where the broker supports it. Default 60000; `false` or `Infinity`: never
   * (every retry waits in the process, which keeps strict per-key order).
   */
  durableRetryAfter?: number | false
}

export interface MessageHandlerOptions<S extends TSchema | undefined = undefined> extends RetryOptions {
  /** The topic or topics to consume. */
  topic: string | string[]
  /** The consumer group. Default: the messaging's `source` (the service name). */
  group?: string
  /** A TypeBox schema: the message is validated before the handler runs; an invalid one is dead-lettered with the errors. */
  schema?: S
  /** Messages handled at once (messages with the same key always one after the other). Default 10. */
  concurrency?: number
  /** Start this handler from `startConsumers()` even when it is not in the loaded directory. Default false. */
  autoStart?: boolean
  /**
   * The largest message body this handler accepts, in bytes; a bigger one is dead-lettered,
   * unchanged and unparsed, with a reason giving its size. Default: `startConsumers`'s
   * `maxMessageBytes`, else 1 MiB (1048576).
   */
  maxMessageBytes?: number
  /** `true` hands the handler the body as a Buffer, undecoded: see `RawMessageHandlerOptions`. Default false. */
  raw?: false
}

/**
 * The options of a raw handler (`raw: true`): it receives the message body as a `Buffer`,
 * byte for byte, never parsed, decoded or validated, so a message is never dead-lettered
 * for its body (not JSON, not UTF-8, empty); `ctx.event` is undefined (the `event-*`
 * headers are in `ctx.headers`). This is how a dead-letter reader sees every letter. No `schema`.
 */
export interface RawMessageHandlerOptions extends Omit<MessageHandlerOptions, 'schema' | 'raw'> {
  raw: true
  schema?: never
}

/** The function of a raw handler: the body as a Buffer, and `ctx`. */
export type RawMessageHandlerFn<C extends object> = {
  handle(body: Buffer, ctx: Context<C>): unknown
}['handle']

/** The message type a handler receives: the schema's static type, or `unknown` without one. */
export type MessageOf<S> = S extends TSchema ? Static<S> : unknown

/**
 * The handler function. Declared as a method so its `ctx` parameter is checked
 * bivariantly: a handler may annotate `ctx: Context<{ db: Db }>` for what `context()` adds.
 */
export type MessageHandlerFn<S extends TSchema | undefined, C extends object> = {
  handle(message: MessageOf<S>, ctx: Context<C>): unknown
}['handle']

/** Retry policy after defaults and validation. */
export interface RetryPolicy {
  maxRetries: number
  retryDelay: number
  backoff: 'exponential' | 'fixed'
  maxRetryDelay: number
  deadLetter: string | false | undefined
  timeout: number | undefined
  /** Infinity: never. */
  durableRetryAfter: number
}

/** One callable target: a handler function, or one `@onEvent` method. */
export interface Target {
  /** For logs: the function's name or `Class.method`. */
  name: string
  policy: RetryPolicy
  schema: TSchema | undefined
  /** `raw: true`: the payload is the body as a Buffer, undecoded, and the event undefined. */
  raw: boolean
  /** Calls the user's code with the (validated) payload or event. */
  invoke(payload: unknown, event: Event | undefined, ctx: Context): unknown
  /** A batch handler's target (`batchHandler()`): its messages are gathered and handed over together; `invoke` is not used. */
  batch?: BatchTarget
}

/** How a batch handler gathers its messages, and the call that takes a batch. */
export interface BatchTarget {
  maxBatchSize: number
  maxWaitMs: number
  invoke(items: BatchItem[], ctx: BatchContext): Promise<unknown>
}

/** One message of a batch, as a batch handler receives it. */
export interface BatchItem<T = unknown> {
  /** The message (an event's `data`, or a plain message's JSON), validated by the schema when there is one. */
  message: T
  /** The event, when the message is a Herald envelope. Use `event.id` to make handlers idempotent. */
  event: Event | undefined
  topic: string
  key: string | undefined
  headers: Record<string, string>
  /** 1 on the first delivery, then 2, 3… for this message's retries. */
  attempt: number
  /** The broker's name for the message's position. */
  messageId: string
}

/** A batch handler's second argument, besides whatever `context()` returned. */
export interface BatchHandlerContext {
  /** Marks one item (its index in the batch, or the item itself) as failed: only it is retried, or dead-lettered when `error` is a `NonRetriableError` or its attempts are used up. */
  fail(item: number | BatchItem<any>, error: unknown): void
  /** A logger bound to the group and handler. */
  logger: Logger
  /** Aborted when the batch's `timeout` expires or a shutdown stops waiting for it. */
  signal: AbortSignal
  messaging: Messaging
}

/** The batch handler context with the fields your `context()` factory adds. */
export type BatchContext<Extra extends object = {}> = BatchHandlerContext & Extra

// A registered symbol: a handler module may import another copy of Herald than the runner that loads
// it (a globally installed CLI, a linked package), and the runner must still recognise it.
export const HANDLER = Symbol.for('herald.handler')

/**
 * A consumer unit: the topics of one group and how to route each message to a target.
 * `messageHandler()` returns one; a `@consumer` class carries one.
 */
export interface HandlerDefinition {
  readonly [HANDLER]: true
  /** For logs and errors. */
  readonly name: string
  readonly topics: readonly string[]
  /** Undefined: the messaging's `source`. */
  readonly group: string | undefined
  readonly concurrency: number
  readonly autoStart: boolean
  /** Undefined: `startConsumers`'s `maxMessageBytes`, else 1 MiB. */
  readonly maxMessageBytes: number | undefined
  /** Where a message goes: a target, or undefined to acknowledge and skip it (an event no method handles). */
  route(event: Event | undefined): Target | undefined
  /**
   * The raw target (`raw: true`) a message goes to, decided from its headers alone, before
   * (and instead of) decoding its body; undefined when the body must be decoded to route it.
   */
  routeUndecoded?(headers: Record<string, string>): Target | undefined
  /** Every target, to know the dead-letter destinations before the first message. */
  readonly targets: readonly Target[]
}
