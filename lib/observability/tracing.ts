/**
 * OpenTelemetry tracing, through `@opentelemetry/api` only: whatever SDK and propagator the
 * application registered get Herald's spans; with none registered the API is a no-op.
 *
 * - `send <topic>` (PRODUCER): one per published message. Its context is injected into the
 *   message headers (`traceparent`/`tracestate` under the default propagator) before the
 *   message can reach the outbox, so a message relayed later still continues the trace.
 * - `process <topic>` (CONSUMER): one per attempt. The first attempt (no earlier delivery)
 *   is a child of the context extracted from the headers; a retry or a redelivery starts a
 *   new trace. Every attempt links to the extracted context.
 * - `send <dead-letter topic>` (PRODUCER, `herald.dead_letter: true`): the dead-lettering,
 *   a child of the last attempt. The dead letter keeps the original `traceparent`.
 *
 * A span starts with the attributes the messaging conventions ask for at creation (for the
 * sampler: system, destination, operation, group), one object per broker, topic and group
 * built once; the per-message ones (message id, key, delivery id, attempt, partition, offset)
 * are added only when the span records, so a message the sampler drops costs no attribute work.
 */
import type { Attributes, Context, Link, ProxyTracerProvider, Span, Tracer, TracerProvider } from '@opentelemetry/api'
import type { Delivery } from '../brokers/broker.js'
import { redactText } from '../redact.js'
import { subscribe, TupleCache, type AttemptScope, type ConsumeInfo, type MessageScope, type PublishInfo, type PublishScope } from './instrumentation.js'
import { otel, type Otel } from './otel.js'

/** `messaging.system` of each broker; the embedded one is not a known system. */
const SYSTEMS: Record<string, string | undefined> = { kafka: 'kafka', rabbitmq: 'rabbitmq', redis: 'redis', memory: 'herald.memory' }

/** The `messaging.system` attribute of a broker kind. */
export const messagingSystem = (broker: string): string => SYSTEMS[broker] ?? broker

/** The `error.type` attribute of an error: its code when it has one, else its class name (bounded, never its message). */
export function errorType (error: unknown): string {
  const err = error instanceof Error ? error : new Error(String(error))
  const code = (err as { code?: unknown }).code
  return code !== undefined ? String(code) : err.name
}

/** A Kafka delivery's id is `topic/partition@offset`. */
const KAFKA_POSITION = /\/(\d+)@(\d+)$/

function failed (api: Otel, span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error))
  span.recordException({ name: err.name, message: redactText(err.message) })
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: redactText(err.message) })
  span.setAttribute('error.type', errorType(err))
}

/** The name and the creation attributes of a consumer span, by broker, topic and group. */
const processSpan = new TupleCache((broker, topic, group) => ({
  name: `process ${topic}`,
  attributes: Object.freeze<Attributes>({
    'messaging.system': messagingSystem(broker),
    'messaging.destination.name': topic,
    'messaging.consumer.group.name': group,
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process'
  })
}))

/** The name and the creation attributes of a producer span, by broker and topic. */
const sendSpan = new TupleCache((broker, topic) => ({
  name: `send ${topic}`,
  attributes: Object.freeze<Attributes>({
    'messaging.system': messagingSystem(broker),
    'messaging.destination.name': topic,
    'messaging.operation.type': 'send',
    'messaging.operation.name': 'send'
  })
}))

/** The attributes of one attempt that only a recording span gets. */
function describeAttempt (span: Span, info: ConsumeInfo, attempt: number): void {
  const d: Delivery = info.delivery
  span.setAttribute('herald.delivery.id', d.id)
  span.setAttribute('herald.attempt', attempt)
  const eventId = d.headers['event-id']
  if (eventId !== undefined) span.setAttribute('messaging.message.id', eventId)
  if (info.broker === 'kafka') {
    if (d.key !== undefined) span.setAttribute('messaging.kafka.message.key', d.key)
    const position = KAFKA_POSITION.exec(d.id)
    if (position !== null) {
      span.setAttribute('messaging.destination.partition.id', position[1]!)
      span.setAttribute('messaging.kafka.offset', Number(position[2]))
    }
  }
}

/** The tracer provider the API hands out when none is registered. */
const NOOP_PROVIDER = otel !== undefined ? new otel.ProxyTracerProvider().getDelegate() : undefined
let current: { provider: TracerProvider, tracer: Tracer } | undefined

/**
 * Herald's tracer from the registered provider (got once per provider), or undefined when
 * nothing listens: no tracer provider and no propagator registered, where every span
 * would be a no-op and no header would be written or read. Checked at each message, cheaply.
 */
function listeningTracer (api: Otel): Tracer | undefined {
  const global = api.trace.getTracerProvider()
  // The global provider is the API's proxy; its delegate is the SDK's provider once one is registered.
  const provider = typeof (global as ProxyTracerProvider).getDelegate === 'function' ? (global as ProxyTracerProvider).getDelegate() : global
  if (provider === NOOP_PROVIDER && api.propagation.fields().length === 0) return undefined
  if (current?.provider !== provider) current = { provider, tracer: provider.getTracer('herald') }
  return current.tracer
}

function publishSpan (api: Otel, info: PublishInfo): PublishScope | undefined {
  if (!info.tracing) return undefined
  const tracer = listeningTracer(api)
  if (tracer === undefined) return undefined
  const { message } = info
  const { name, attributes } = sendSpan.get(info.broker, message.topic)
  const parent = api.context.active()
  const span = tracer.startSpan(name, { kind: api.SpanKind.PRODUCER, attributes }, parent)
  if (span.isRecording()) {
    if (info.eventId !== undefined) span.setAttribute('messaging.message.id', info.eventId)
    if (info.broker === 'kafka' && message.key !== undefined) span.setAttribute('messaging.kafka.message.key', message.key)
  }
  api.propagation.inject(api.trace.setSpan(parent, span), message.headers)
  return {
    end: (error) => {
      if (error !== undefined) failed(api, span, error)
      span.end()
    }
  }
}

function consumeSpans (api: Otel, info: ConsumeInfo): MessageScope | undefined {
  if (!info.tracing) return undefined
  const tracer = listeningTracer(api)
  if (tracer === undefined) return undefined
  const extracted = api.propagation.extract(api.ROOT_CONTEXT, info.delivery.headers)
  const origin = api.trace.getSpanContext(extracted)
  const links: Link[] = origin !== undefined && api.isSpanContextValid(origin) ? [{ context: origin }] : []
  const topic = info.delivery.topic
  const { name, attributes } = processSpan.get(info.broker, topic, info.group)
  let last: Context | undefined
  return {
    attempt: (attempt: number): AttemptScope => {
      // Only the first delivery's first attempt continues the producer's trace; a retry or a
      // redelivery is a trace of its own, linked to it (a trace that never ends is unreadable).
      const parent = attempt === 1 ? extracted : api.ROOT_CONTEXT
      const span = tracer.startSpan(name, { kind: api.SpanKind.CONSUMER, links, attributes }, parent)
      if (span.isRecording()) describeAttempt(span, info, attempt)
      const context = api.trace.setSpan(parent, span)
      return {
        run: (fn) => api.context.with(context, fn),
        end: (outcome, error) => {
          span.setAttribute('herald.outcome', outcome)
          if (error !== undefined) failed(api, span, error)
          span.end()
          last = context
        }
      }
    },
    deadLetter: async (destination, send) => {
      const parent = last ?? extracted
      const eventId = info.delivery.headers['event-id']
      const span = tracer.startSpan(`send ${destination}`, {
        kind: api.SpanKind.PRODUCER,
        links,
        attributes: {
          'messaging.system': messagingSystem(info.broker),
          'messaging.destination.name': destination,
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'send',
          'messaging.consumer.group.name': info.group,
          'herald.dead_letter': true,
          'herald.dead_letter.topic': topic,
          ...(eventId !== undefined ? { 'messaging.message.id': eventId } : {})
        }
      }, parent)
      try {
        await api.context.with(api.trace.setSpan(parent, span), send)
      } catch (err) {
        failed(api, span, err)
        throw err
      } finally {
        span.end()
      }
    },
    end: () => {}
  }
}

/** `trace_id` and `span_id` of the active span, for log lines; empty without one. */
export function traceLogFields (): Record<string, string> {
  const context = otel?.trace.getActiveSpan()?.spanContext()
  if (context === undefined || !otel!.isSpanContextValid(context)) return {}
  return { trace_id: context.traceId, span_id: context.spanId }
}

if (otel !== undefined) {
  const api = otel
  subscribe({ publish: info => publishSpan(api, info), consume: info => consumeSpans(api, info) })
}
