import type { TSchema } from '@sinclair/typebox'
import { HandlerError } from '../errors.js'
import {
  HANDLER, type BatchContext, type BatchItem, type HandlerDefinition, type MessageOf, type RetryOptions, type Target
} from './handler.js'
import {
  BATCH_HANDLER_OPTIONS, checkKnownOptions, resolveAutoStart, resolveGroup, resolveMaxMessageBytes, resolveRetryPolicy, resolveSchema,
  resolveTopics, wholeNumber
} from './options.js'
import { registerHandler } from './registry.js'

export interface BatchHandlerOptions<S extends TSchema | undefined = undefined> extends RetryOptions {
  /** The topic or topics to consume. */
  topic: string | string[]
  /** The consumer group. Default: the messaging's `source` (the service name). */
  group?: string
  /** A TypeBox schema each message is validated against before it joins a batch; an invalid one is dead-lettered with the errors. */
  schema?: S
  /** The most messages in one batch. Default 100. */
  maxBatchSize?: number
  /** How long the first message of a batch waits for others before the batch runs anyway, in ms. Default 50. */
  maxWaitMs?: number
  /** Start this handler from `startConsumers()` even when it is not in the loaded directory. Default false. */
  autoStart?: boolean
  /** The largest message body accepted, in bytes; a bigger one is dead-lettered unparsed. Default: `startConsumers`'s, else 1 MiB. */
  maxMessageBytes?: number
}

/** The function of a batch handler: the items in delivery order, and `ctx` (with `ctx.fail(i, err)`). */
export type BatchHandlerFn<S extends TSchema | undefined, C extends object> = {
  handle(items: Array<BatchItem<MessageOf<S>>>, ctx: BatchContext<C>): unknown
}['handle']

/**
 * Defines a handler that receives messages in batches: up to `maxBatchSize` messages,
 * or what arrived within `maxWaitMs` of the first, in delivery order. One batch runs at a
 * time, so messages of one key reach the handler in order.
 *
 * Each item is settled on its own: when the function returns, every item is acknowledged
 * except those marked with `ctx.fail(i, err)`, which are retried (in a later batch) or
 * dead-lettered like a `messageHandler`'s messages; when it throws, every item not marked
 * fails with that error. Schema-invalid messages are dead-lettered before they join a batch.
 *
 * @example
 * export default batchHandler(
 *   { topic: 'orders.created', schema: Order, maxBatchSize: 500, maxWaitMs: 100 },
 *   async (items, ctx) => {
 *     const results = await ctx.db.orders.insertMany(items.map(i => i.message))
 *     results.forEach((r, i) => { if (!r.ok) ctx.fail(i, r.error) })
 *   })
 */
export function batchHandler<S extends TSchema | undefined = undefined, C extends object = {}> (options: BatchHandlerOptions<S>, fn: BatchHandlerFn<S, C>): HandlerDefinition {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new HandlerError('batchHandler(options, fn): options must be an object with at least a topic, e.g. batchHandler({ topic: "orders" }, async (items, ctx) => {})')
  if (typeof fn !== 'function') throw new HandlerError('batchHandler(options, fn): fn must be a function (items, ctx) => …')
  const name = fn.name !== '' ? fn.name : `batchHandler(${String(options.topic)})`
  const where = `batchHandler "${name}"`
  checkKnownOptions(where, options, BATCH_HANDLER_OPTIONS)
  const topics = resolveTopics(where, options.topic)
  const maxBatchSize = wholeNumber(where, 'maxBatchSize', options.maxBatchSize ?? 100)
  const target: Target = {
    name,
    policy: resolveRetryPolicy(where, options),
    schema: resolveSchema(where, options.schema),
    raw: false,
    invoke: () => { throw new HandlerError(`${where}: a batch handler takes its messages in batches, never one by one`) },
    batch: {
      maxBatchSize,
      maxWaitMs: wholeNumber(where, 'maxWaitMs', options.maxWaitMs ?? 50),
      invoke: async (items, ctx) => await fn(items as never, ctx as never)
    }
  }
  const definition: HandlerDefinition = {
    [HANDLER]: true,
    name,
    topics,
    group: resolveGroup(where, options.group),
    // Up to a batch is handled at once; the next one gathers meanwhile.
    concurrency: maxBatchSize,
    autoStart: resolveAutoStart(where, options.autoStart),
    maxMessageBytes: resolveMaxMessageBytes(where, options.maxMessageBytes),
    targets: [target],
    route: () => target
  }
  if (definition.autoStart) registerHandler(definition)
  return definition
}
