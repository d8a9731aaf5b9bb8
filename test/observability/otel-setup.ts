// An OpenTelemetry SDK for the tests: spans kept in memory, W3C propagation, async context.
// Registered for the tests that need it and removed after them, so other test files run
// without an SDK, as most users do.
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { AggregationTemporality, MetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type Sampler } from '@opentelemetry/sdk-trace-base'

export interface TestSdk {
  exporter: InMemorySpanExporter
  spans(): ReadableSpan[]
  close(): Promise<void>
}

/** `sampler`: the SDK's default (every span recorded) unless given. */
export function registerTestSdk (sampler?: Sampler): TestSdk {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)], ...(sampler !== undefined ? { sampler } : {}) })
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  return {
    exporter,
    spans: () => exporter.getFinishedSpans(),
    close: async () => {
      await provider.shutdown()
      trace.disable()
      propagation.disable()
      context.disable()
    }
  }
}

export const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId

/** A reader the test collects from when it wants, cumulative like Prometheus. */
export class TestReader extends MetricReader {
  constructor () { super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE }) }
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}
