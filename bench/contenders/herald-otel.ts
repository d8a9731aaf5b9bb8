// Herald at its defaults with observability on, as a production service runs it: an
// OpenTelemetry SDK (tracer provider with a BatchSpanProcessor, W3C propagation, async
// context; meter provider) and `herald/metrics` on prom-client's registry. The exporter
// drops what it gets, so the measure is Herald's cost, not an exporter's.
// `herald-sdk`: the same SDK registered, but Herald with `tracing: false` and no
// `herald/metrics`: what the application's SDK costs by itself (its async context tracks
// every promise of the broker clients), so the difference is Herald's own part.
// `herald-otel-sampled`: as `herald-otel`, with the sampler production services run,
// ParentBased(TraceIdRatioBased(0.1)): 9 messages in 10 get non-recording spans.
import { heraldMetrics } from '../../dist/plugins/metrics.js'
import type { Task } from '../common.js'
import { run as runHerald } from './herald.js'
import { registerOtelSdk } from '../otel-sdk.js'

export async function run (task: Task, observed = true, sampled = false): Promise<void> {
  const { tracerProvider, meterProvider, reader } = registerOtelSdk(sampled)
  const prom = observed ? heraldMetrics() : undefined
  try {
    await runHerald(task, observed ? {} : { tracing: false })
    await reader.collect()
    await prom?.registry.metrics()
  } finally {
    await tracerProvider.shutdown()
    await meterProvider.shutdown()
  }
}
