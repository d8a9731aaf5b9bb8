import type { TSchema } from '@sinclair/typebox'
import { HandlerError } from '../errors.js'
import { HEADER_EVENT_NAME, type Event } from '../event.js'
import { HANDLER, type Context, type HandlerDefinition, type RetryOptions, type Target } from './handler.js'
import {
  checkKnownOptions, CONSUMER_OPTIONS, ON_EVENT_OPTIONS, resolveAutoStart, resolveConcurrency, resolveGroup,
  resolveMaxMessageBytes, resolveRaw, resolveRetryPolicy, resolveSchema, resolveTopics
} from './options.js'
import { registerHandler } from './registry.js'

export interface ConsumerOptions {
  /** The topics this consumer reads; each event is routed to the `@onEvent` method for its name. */
  topics: string | string[]
  /** Events handled at once (same key: one after the other). Default 10. */
  concurrency?: number
  /** Start from `startConsumers()` even when not in the loaded directory. Default false. */
  autoStart?: boolean
  /** The largest message body accepted, in bytes; a bigger one is dead-lettered unparsed. Default: `startConsumers`'s, else 1 MiB. */
  maxMessageBytes?: number
}

export interface OnEventOptions extends RetryOptions {
  /** A TypeBox schema for the event's `data`; an event that does not match is dead-lettered. */
  schema?: TSchema
  /** `true`: the method receives the body as a Buffer, undecoded (see `RawOnEventOptions`). Default false. */
  raw?: false
}

/**
 * A raw `@onEvent` method receives the body as a `Buffer`, undecoded, and `ctx`: the event
 * is routed by its `event-name` header (which Herald puts on every event), so its body is
 * never parsed and never dead-lettered for being malformed. No `schema`.
 */
export interface RawOnEventOptions extends RetryOptions {
  raw: true
  schema?: never
}

interface PendingMethod {
  names: string[]
  options: OnEventOptions | RawOnEventOptions
  method: string | symbol
  fn: unknown
}

// Standard decorators run every method decorator of a class before its class decorator.
// Node 20 has no `Symbol.metadata`, so instead of context.metadata the methods wait here
// until `@consumer` collects the ones that belong to its class (its prototype holds that
// very function). Those of a class without `@consumer` stay here, and `startConsumers()`
// reports them: never dropped in silence, never taken by another class.
const pendingMethods: PendingMethod[] = []

/** Takes the `@onEvent` methods no `@consumer` class collected, as `method (event names)`. */
export function takeStrayOnEventMethods (): string[] {
  return pendingMethods.splice(0).map(p => `${String(p.method)} ("${p.names.join('", "')}")`)
}

// Registered, like HANDLER: the class may come from a module that imports another copy of Herald.
const CONSUMER_DEFINITION = Symbol.for('herald.consumer')

function assertStandard (decorator: string, context: unknown): void {
  if (context === null || typeof context !== 'object' || !('kind' in context)) {
    throw new HandlerError(`@${decorator} is a standard (TC39) decorator: remove "experimentalDecorators" from your tsconfig.json`)
  }
}

/**
 * Marks a method as the handler of one or more event names, inside a `@consumer` class.
 * The method receives the decoded `Event` and the handler context.
 *
 * @example
 * @onEvent('user.created', { maxRetries: 5 })
 * async userCreated (event: Event<User>, ctx: Context) {}
 */
export function onEvent (names: string | string[], options: RawOnEventOptions): <This, Fn extends (this: This, body: Buffer, ctx: Context<any>) => unknown> (fn: Fn, context: ClassMethodDecoratorContext<This, Fn>) => void
export function onEvent (names: string | string[], options?: OnEventOptions): <This, Fn extends (this: This, event: Event<any>, ctx: Context<any>) => unknown> (fn: Fn, context: ClassMethodDecoratorContext<This, Fn>) => void
export function onEvent (names: string | string[], options: OnEventOptions | RawOnEventOptions = {}) {
  const list = Array.isArray(names) ? names : [names]
  if (list.length === 0 || list.some(n => typeof n !== 'string' || n === '')) {
    throw new HandlerError(`@onEvent: give an event name or an array of them, got ${JSON.stringify(names)}`)
  }
  return function <This, Fn extends (this: This, event: any, ctx: Context<any>) => unknown> (fn: Fn, context: ClassMethodDecoratorContext<This, Fn>): void {
    assertStandard('onEvent', context)
    if (context.kind !== 'method' || context.static || context.private) {
      throw new HandlerError(`@onEvent("${list.join('", "')}") must decorate a public instance method`)
    }
    // Check the options now, so a mistake names the method.
    const where = `@onEvent method ${String(context.name)}`
    if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new HandlerError(`${where}: the options must be an object, e.g. { maxRetries: 5 }`)
    checkKnownOptions(where, options, ON_EVENT_OPTIONS)
    resolveRetryPolicy(where, options)
    resolveSchema(where, options.schema)
    resolveRaw(where, options.raw, options.schema)
    pendingMethods.push({ names: list, options, method: context.name, fn })
  }
}

/**
 * Makes a class a consumer: one group reading `topics`, each event dispatched by name to
 * its `@onEvent` method. Events with no method are acknowledged and skipped. The class is
 * instantiated once, with no arguments; take dependencies from `ctx` (your `context()`).
 *
 * @example
 * @consumer('order-service', { topics: ['user-events', 'payment-events'] })
 * export class OrderEventsConsumer {
 *   @onEvent('user.created') async userCreated (event: Event<User>, ctx: Context) {}
 * }
 */
export function consumer (group: string, options: ConsumerOptions) {
  return function <C extends new () => object> (cls: C, context: ClassDecoratorContext<C>): void {
    assertStandard('consumer', context)
    // This class's methods first, so that a mistake below does not leave them behind as strays.
    const mine: PendingMethod[] = []
    for (let i = pendingMethods.length - 1; i >= 0; i--) {
      if ((cls.prototype as Record<string | symbol, unknown>)[pendingMethods[i]!.method] === pendingMethods[i]!.fn) mine.unshift(...pendingMethods.splice(i, 1))
    }
    const className = String(context.name ?? cls.name)
    const where = `@consumer class ${className}`
    resolveGroup(where, group)
    if (typeof group !== 'string') throw new HandlerError(`${where}: the group (first argument) must be a non-empty string, e.g. @consumer("billing", { topics: ["orders"] })`)
    if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new HandlerError(`${where}: give the options, at least { topics: [...] }`)
    checkKnownOptions(where, options, CONSUMER_OPTIONS)
    if (mine.length === 0) throw new HandlerError(`${where} has no @onEvent method; add one for each event name it handles`)

    let instance: Record<string | symbol, (event: Event, ctx: Context) => unknown> | undefined
    const byName = new Map<string, Target>()
    const targets: Target[] = []
    for (const p of mine) {
      const name = `${className}.${String(p.method)}`
      const target: Target = {
        name,
        policy: resolveRetryPolicy(`@onEvent method ${name}`, p.options),
        schema: p.options.schema,
        raw: p.options.raw === true,
        invoke: async (payload, event, ctx) => {
          instance ??= new cls() as never
          // The schema checked `data`; the method gets the whole event (a raw one: the body).
          return await instance![p.method]!.call(instance, (p.options.raw === true ? payload : event) as Event, ctx)
        }
      }
      targets.push(target)
      for (const eventName of p.names) {
        if (byName.has(eventName)) throw new HandlerError(`${where}: event "${eventName}" has two @onEvent methods (${byName.get(eventName)!.name} and ${name}); keep one`)
        byName.set(eventName, target)
      }
    }
    const definition: HandlerDefinition = {
      [HANDLER]: true,
      name: className,
      topics: resolveTopics(where, options.topics, 'topics'),
      group,
      concurrency: resolveConcurrency(where, options.concurrency),
      autoStart: resolveAutoStart(where, options.autoStart),
      maxMessageBytes: resolveMaxMessageBytes(where, options.maxMessageBytes),
      targets,
      route: (event) => event === undefined ? undefined : byName.get(event.name),
      routeUndecoded: targets.some(t => t.raw) ? (headers) => rawTarget(byName, headers) : undefined
    }
    Object.defineProperty(cls, CONSUMER_DEFINITION, { value: definition })
    if (definition.autoStart) registerHandler(definition)
  }
}

/** The raw method for the event named by the `event-name` header, if that method is raw. */
function rawTarget (byName: Map<string, Target>, headers: Record<string, string>): Target | undefined {
  const name = headers[HEADER_EVENT_NAME]
  const target = name === undefined ? undefined : byName.get(name)
  return target?.raw === true ? target : undefined
}

/** The handler definition of a `messageHandler()` value or a `@consumer` class; undefined for anything else. */
export function definitionOf (value: unknown): HandlerDefinition | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined
  if ((value as Partial<HandlerDefinition>)[HANDLER] === true) return value as HandlerDefinition
  const fromClass = (value as { [CONSUMER_DEFINITION]?: HandlerDefinition })[CONSUMER_DEFINITION]
  return fromClass
}
