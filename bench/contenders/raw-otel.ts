// `raw-otel`: the `raw` contender (Herald's bytes, the careful raw loops) traced the way its
// users trace it today: the OpenTelemetry SDK of the observability contenders (otel-sdk.ts)
// and the official instrumentation of the client, registered before the client is loaded.
// - kafkajs (@opentelemetry/instrumentation-kafkajs): a PRODUCER span per message sent, with
//   the W3C context injected in its headers; per batch consumed, a receive span and a
//   CONSUMER span per message, linked to its producer's, ended with the batch; OTel metrics.
// - amqplib (@opentelemetry/instrumentation-amqplib): a PRODUCER span per publish, context in
//   the headers; a CONSUMER span per message, parented on it, ended at the ack.
// - ioredis (@opentelemetry/instrumentation-ioredis): a CLIENT span per command; Redis
//   Streams have no messaging instrumentation, so nothing is traced per message consumed and
//   no context travels: it costs less than what Herald does, and is what users have.
// Set against `herald-otel` (the same SDK, Herald's spans and metrics) and read beside
// `raw` ÷ `herald`: what tracing adds to each, not which traces more.
import { createRequire } from 'node:module'
import { registerInstrumentations, type Instrumentation } from '@opentelemetry/instrumentation'
import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import { KafkaJsInstrumentation } from '@opentelemetry/instrumentation-kafkajs'
import type { Context } from '@opentelemetry/api'
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Task } from '../common.js'
import { registerOtelSdk } from '../otel-sdk.js'

/** The client each broker's raw loop uses, as the root install resolves it (bench/amqplib.ts). */
const CLIENTS: Record<string, { module: string, instrumentation: () => Instrumentation }> = {
  kafka: { module: 'kafkajs', instrumentation: () => new KafkaJsInstrumentation() },
  rabbitmq: { module: 'amqplib', instrumentation: () => new AmqplibInstrumentation() },
  redis: { module: 'ioredis', instrumentation: () => new IORedisInstrumentation() }
}

/** Counts the spans ended, to tell a client the instrumentation did not patch (nothing traced). */
class SpanCount implements SpanProcessor {
  ended = 0
  onStart (_span: Span, _context: Context): void {}
  onEnd (_span: ReadableSpan): void { this.ended++ }
  async forceFlush (): Promise<void> {}
  async shutdown (): Promise<void> {}
}

export async function run (task: Task): Promise<void> {
  const client = CLIENTS[task.broker]
  if (client === undefined) throw new Error('raw-otel needs a real broker (kafka, rabbitmq or redis)')
  const spans = new SpanCount()
  const { tracerProvider, meterProvider, reader } = registerOtelSdk(false, [spans])
  registerInstrumentations({ instrumentations: [client.instrumentation()], tracerProvider, meterProvider })
  // Loaded through require() now, so that the instrumentation patches it: the raw loops'
  // ESM imports of it, made after this, get the same (patched) module.
  const fromRoot = createRequire(new URL('../../package.json', import.meta.url))
  fromRoot(client.module)
  try {
    await (await import('./raw.js')).run(task, false)
    await reader.collect()
    if (spans.ended === 0) throw new Error(`raw-otel: the ${client.module} instrumentation traced nothing (${task.role}); the measure would be the raw loop's`)
  } finally {
    await tracerProvider.shutdown()
    await meterProvider.shutdown()
  }
}
