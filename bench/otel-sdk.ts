// The OpenTelemetry SDK a production service registers, as the observability contenders and
// bench/otel-cost.ts use it: a tracer provider with a BatchSpanProcessor (its exporter drops
// what it gets, so the measure is the instrumentation's cost, not an exporter's), W3C
// propagation, the AsyncLocalStorage context manager, and a meter provider collected once at
// the end, as a scrape would. `sampled`: ParentBased(TraceIdRatioBased(0.1)).
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base'

const dropSpans: SpanExporter = { export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }), shutdown: async () => {} }

/** Collected once at the end: the instruments record every message meanwhile. */
class EndReader extends MetricReader {
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}

export interface OtelSdk {
  tracerProvider: BasicTracerProvider
  meterProvider: MeterProvider
  reader: MetricReader
}

/** Registers the SDK globally (once per process); `also`: more span processors, after the batch one. */
export function registerOtelSdk (sampled: boolean, also: SpanProcessor[] = []): OtelSdk {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new BatchSpanProcessor(dropSpans), ...also],
    ...(sampled ? { sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.1) }) } : {})
  })
  trace.setGlobalTracerProvider(tracerProvider)
  const reader = new EndReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  metrics.setGlobalMeterProvider(meterProvider)
  return { tracerProvider, meterProvider, reader }
}
