// `@opentelemetry/api` is an optional peer dependency: loaded once, synchronously, when
// it is installed. Its registrations live on a global, so the copy loaded here sees the
// SDK the application registered through its own import.
import { createRequire } from 'node:module'
import type * as OtelApi from '@opentelemetry/api'

export type Otel = typeof OtelApi

function load (): Otel | undefined {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as Otel
  } catch {
    return undefined
  }
}

/** The OpenTelemetry API, or `undefined` when `@opentelemetry/api` is not installed. */
export const otel: Otel | undefined = load()
