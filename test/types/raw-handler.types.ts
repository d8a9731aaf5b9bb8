/**
 * Type-level tests of raw handlers (`raw: true`), checked by `npm run typecheck`. Nothing here runs.
 * A raw handler's message is the body as a Buffer; without raw it stays the decoded data.
 */
import { Type } from '@sinclair/typebox'
import { consumer, messageHandler, onEvent, type Context, type Event } from '../../lib/index.js'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (): T | undefined { return undefined }

export const rawReader = messageHandler({ topic: 'orders.billing.dlq', raw: true }, async (body, ctx) => {
  expectType<Equals<typeof body, Buffer>>()
  expectType<Equals<typeof ctx.headers, Record<string, string>>>()
})

export const decoded = messageHandler({ topic: 'orders', schema: Type.Object({ id: Type.Number() }) }, async (order) => {
  expectType<Equals<typeof order, { id: number }>>()
})

export const plain = messageHandler({ topic: 'orders' }, async (message) => {
  expectType<Equals<typeof message, unknown>>()
})

// @ts-expect-error: a raw handler has no schema (there is nothing decoded to validate)
export const rawWithSchema = messageHandler({ topic: 'orders', raw: true, schema: Type.Object({ id: Type.Number() }) }, async () => {})

// @ts-expect-error: a raw handler gets a Buffer, not a string
export const rawAsString = messageHandler({ topic: 'orders', raw: true }, async (body: string) => { void body })

@consumer('uploads', { topics: ['blobs'] })
export class Uploads {
  @onEvent('blob.uploaded', { raw: true })
  async blob (body: Buffer, ctx: Context): Promise<void> { void body; void ctx }

  @onEvent('user.created')
  async user (event: Event<{ id: number }>): Promise<void> { void event }
}

@consumer('uploads', { topics: ['blobs'] })
export class WrongRaw {
  // @ts-expect-error: a raw method receives the body as a Buffer, not the decoded event
  @onEvent('blob.uploaded', { raw: true })
  async blob (event: Event<{ id: number }>): Promise<void> { void event }
}
