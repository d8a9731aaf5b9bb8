/**
 * Type-level tests of `@event`, checked by `npm run typecheck`. Nothing here runs.
 * The decorated call resolves only after the event is published, so it always returns a
 * Promise: `@event` takes only methods typed to return one, and then the type is true.
 */
import { event } from '../../lib/handlers/event-decorator.js'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (): T | undefined { return undefined }

export class Users {
  @event('user.created', { topic: 'user-events' })
  async create (email: string): Promise<{ email: string }> { return { email } }

  @event('user.loaded', { topic: 'user-events' })
  load (id: number): Promise<number> { return Promise.resolve(id) }

  // @ts-expect-error: a synchronous method would return a Promise at run time while typed to return the value
  @event('user.counted', { topic: 'user-events' })
  count (): number { return 1 }

  // @ts-expect-error: a void method is synchronous too
  @event('user.touched', { topic: 'user-events' })
  touch (): void {}
}

export function eventDecoratorTypes (users: Users): void {
  expectType<Equals<ReturnType<Users['create']>, Promise<{ email: string }>>>()
  expectType<Equals<ReturnType<Users['load']>, Promise<number>>>()
}
