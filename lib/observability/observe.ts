// What the producer and the runner call. Importing it registers tracing and OpenTelemetry
// metrics when `@opentelemetry/api` is installed.
import './otel-metrics.js'
export { observeConsume, observePublish, type AttemptScope, type ConsumeOutcome, type MessageScope } from './instrumentation.js'
export { traceLogFields } from './tracing.js'
