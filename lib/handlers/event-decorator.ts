import { resolveEventConfigs, publishForResult, type EventConfig } from '../emit.js'
import { HandlerError } from '../errors.js'
import { getMessaging, type Messaging } from '../messaging.js'

export interface EventDecoratorOptions extends Omit<EventConfig, 'name' | 'data'> {
  /** The instance to publish through; default the process default (`configureMessaging`). */
  messaging?: Messaging
}

/**
 * A standard (TC39) method decorator for an `async` method (one returning a Promise; a
 * synchronous method is a type error): after the method resolves, its result is published
 * as the event's data, and the call resolves once the broker acknowledged the event. If
 * the publish fails the call rejects with the `PublishError`.
 *
 * @example
 * class Users {
 *   @event('user.created', { topic: 'user-events', keyField: 'id' })
 *   async create (input: NewUser) { return await db.users.insert(input) }
 * }
 */
export function event (name: string, options: EventDecoratorOptions = {}) {
  const { messaging, ...config } = options
  const [resolved] = resolveEventConfigs({ name, ...config }, `@event("${name}")`)
  // Only for methods that return a Promise: the decorated call always resolves after the
  // publish, and a method decorator cannot change the method's type, so a synchronous
  // method would be typed as returning its value while it returns a Promise.
  return function <This, Args extends unknown[], R> (method: (this: This, ...args: Args) => Promise<R>, context: ClassMethodDecoratorContext<This, (this: This, ...args: Args) => Promise<R>>) {
    if (context === null || typeof context !== 'object' || context.kind !== 'method') {
      throw new HandlerError('@event is a standard (TC39) method decorator: use it on a method, without "experimentalDecorators"')
    }
    return async function (this: This, ...args: Args): Promise<R> {
      const result = await method.apply(this, args)
      await publishForResult(messaging ?? getMessaging(), [resolved!], result, undefined)
      return result
    }
  }
}
