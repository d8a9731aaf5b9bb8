import { Kind, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { registerBuiltInFormats } from './formats.js'

// Before any schema is checked; a format the application registers under the same name replaces Herald's.
registerBuiltInFormats()

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>()

/** Whether a value is a TypeBox schema (made with `Type.*`): it carries TypeBox's `Kind` symbol. */
export function isTypeBoxSchema (value: unknown): value is TSchema {
  return value !== null && typeof value === 'object' && Kind in value
}

/** The compiled check of a schema, compiled once. Throws what TypeBox throws for a schema it cannot compile. */
export function compiledSchema (schema: TSchema): TypeCheck<TSchema> {
  let check = compiled.get(schema)
  if (check === undefined) {
    check = TypeCompiler.Compile(schema)
    compiled.set(schema, check)
  }
  return check
}

/**
 * Checks a value against a TypeBox schema (compiled once per schema). Returns undefined
 * when it matches, else a reason listing the first mismatches by JSON path.
 */
export function schemaErrors (schema: TSchema, value: unknown): string | undefined {
  const check = compiledSchema(schema)
  if (check.Check(value)) return undefined
  const errors: string[] = []
  for (const error of check.Errors(value)) {
    errors.push(`${error.path === '' ? '/' : error.path}: ${error.message}`)
    if (errors.length === 5) break
  }
  return `schema validation failed: ${errors.join('; ')}; the handler's schema expects another shape, so the message was not handled`
}
