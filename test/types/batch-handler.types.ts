/**
 * Type-level tests of `batchHandler`, checked by `npm run typecheck`. Nothing here runs.
 * The items carry the schema's static type, `ctx` what `context()` adds and `fail`.
 */
import { Type } from '@sinclair/typebox'
import { batchHandler, type BatchContext, type BatchItem } from '../../lib/index.js'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (): T | undefined { return undefined }

const Order = Type.Object({ id: Type.Number(), total: Type.Number() })

export const typed = batchHandler({ topic: 'orders', schema: Order }, async (items, ctx: BatchContext<{ db: { insert(rows: unknown[]): Promise<void> } }>) => {
  expectType<Equals<typeof items, Array<BatchItem<{ id: number, total: number }>>>>()
  await ctx.db.insert(items.map(i => i.message.total))
  ctx.fail(0, new Error('row 0 refused'))
  ctx.fail(items[0]!, new Error('the item itself'))
})

export const untyped = batchHandler({ topic: 'orders' }, async (items) => {
  expectType<Equals<(typeof items)[number]['message'], unknown>>()
})

// @ts-expect-error: a batch handler has no concurrency (one batch runs at a time)
export const withConcurrency = batchHandler({ topic: 'orders', concurrency: 4 }, async () => {})

export function failNeedsAnItem (ctx: BatchContext): void {
  // @ts-expect-error: fail takes an index or an item
  ctx.fail('first', new Error('x'))
}
