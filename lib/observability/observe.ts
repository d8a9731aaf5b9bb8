// What the producer and the runner call. Importing it registers tracing when
// `@opentelemetry/api` is installed.
export { observeConsume, observePublish, type AttemptScope, type ConsumeOutcome, type MessageScope } from './instrumentation.js'
export { traceLogFields } from './tracing.js'
