import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>()

/**
 * Checks a value against a TypeBox schema (compiled once per schema). Returns undefined
 * when it matches, else a reason listing the first mismatches by JSON path.
 */
export function schemaErrors (schema: TSchema, value: unknown): string | undefined {
  let check = compiled.get(schema)
  if (check === undefined) {
    check = TypeCompiler.Compile(schema)
    compiled.set(schema, check)
  }
  if (check.Check(value)) return undefined
  const errors: string[] = []
  for (const error of check.Errors(value)) {
    errors.push(`${error.path === '' ? '/' : error.path}: ${error.message}`)
    if (errors.length === 5) break
  }
  return `schema validation failed: ${errors.join('; ')}`
}
