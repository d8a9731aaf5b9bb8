import type { TSchema } from '@sinclair/typebox'
import { HandlerError } from '../errors.js'
import {
  HANDLER, type HandlerDefinition, type MessageHandlerFn, type MessageHandlerOptions, type RawMessageHandlerFn, type RawMessageHandlerOptions,
  type Target
} from './handler.js'
import {
  checkKnownOptions, MESSAGE_HANDLER_OPTIONS, resolveAutoStart, resolveConcurrency, resolveGroup, resolveMaxMessageBytes,
  resolveRaw, resolveRetryPolicy, resolveSchema, resolveTopics
} from './options.js'
import { registerHandler } from './registry.js'

/**
 * Defines a handler for the messages of one or more topics. Export it from a file in
 * your handlers directory, or pass it to `startConsumers({ handlers })`. Options are
 * checked now: a bad option throws a `HandlerError` when the module loads.
 *
 * The handler receives the message (an event's `data`, or a plain message's JSON) and
 * `ctx`. It is retried when it throws (`maxRetries`, `retryDelay`, `backoff`), and the
 * message is acknowledged only after it succeeded or was dead-lettered.
 *
 * @example
 * export default messageHandler(
 *   { topic: 'orders.created', schema: Type.Object({ id: Type.Number() }), maxRetries: 3 },
 *   async (order, ctx) => { await ctx.db.orders.insert(order) })
 *
 * With `raw: true` it receives the body as a `Buffer`, undecoded (no JSON, no UTF-8, no
 * schema), so no message is dead-lettered for its body: e.g. a dead-letter reader.
 */
export function messageHandler<C extends object = {}> (options: RawMessageHandlerOptions, fn: RawMessageHandlerFn<C>): HandlerDefinition
export function messageHandler<S extends TSchema | undefined = undefined, C extends object = {}> (options: MessageHandlerOptions<S>, fn: MessageHandlerFn<S, C>): HandlerDefinition
export function messageHandler (
  options: MessageHandlerOptions<TSchema | undefined> | RawMessageHandlerOptions,
  fn: (message: never, ctx: never) => unknown
): HandlerDefinition {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new HandlerError('messageHandler(options, fn): options must be an object with at least a topic, e.g. messageHandler({ topic: "orders" }, async (message, ctx) => {})')
  if (typeof fn !== 'function') throw new HandlerError('messageHandler(options, fn): fn must be a function (message, ctx) => …')
  const name = fn.name !== '' ? fn.name : `handler(${String(options.topic)})`
  const where = `messageHandler "${name}"`
  checkKnownOptions(where, options, MESSAGE_HANDLER_OPTIONS)
  const topics = resolveTopics(where, options.topic)
  const target: Target = {
    name,
    policy: resolveRetryPolicy(where, options),
    schema: resolveSchema(where, options.schema),
    raw: resolveRaw(where, options.raw, options.schema),
    invoke: (payload, _event, ctx) => fn(payload as never, ctx as never)
  }
  const definition: HandlerDefinition = {
    [HANDLER]: true,
    name,
    topics,
    group: resolveGroup(where, options.group),
    concurrency: resolveConcurrency(where, options.concurrency),
    autoStart: resolveAutoStart(where, options.autoStart),
    maxMessageBytes: resolveMaxMessageBytes(where, options.maxMessageBytes),
    targets: [target],
    route: () => target,
    routeUndecoded: target.raw ? () => target : undefined
  }
  if (definition.autoStart) registerHandler(definition)
  return definition
}
