/**
 * OpenTelemetry metrics, through `@opentelemetry/api` only: the numbers `herald/metrics`
 * gives prom-client, from the same instrumentation hub, under the OTel messaging
 * semantic-convention names, for whatever MeterProvider the application registered.
 *
 * - `messaging.client.sent.messages` (counter) and `messaging.client.operation.duration`
 *   (histogram, s): each publish, `error.type` when it failed.
 * - `messaging.process.duration` (histogram, s): each handler attempt, with its
 *   `herald.outcome` (a retried attempt: `retry`).
 * - `messaging.client.consumed.messages` (counter): each message once, when settled, with
 *   its final `herald.outcome`.
 *
 * The two counters are observable counters read from tallies kept here (one number per
 * attribute set, added to per message): what an exporter gets is the same monotonic sum,
 * and a message costs the SDK one record (its histogram) instead of two, each of which
 * hashes its attributes. Every attribute set is built once and reused.
 * - Observable gauges read at collection: `herald.consumer.lag`, `herald.consumer.in_flight`,
 *   `herald.outbox.pending`, `herald.outbox.size`, `herald.outbox.oldest_age`.
 *
 * With no MeterProvider registered (the API's no-op one) nothing is recorded: each publish
 * or message costs one lookup of the global provider.
 */
import type { Attributes, Histogram, Meter, MeterProvider, ObservableResult } from '@opentelemetry/api'
import { MeasuredMessage, perOutcome, secondsSince as since, subscribe, TupleCache, type ConsumeInfo, type ConsumeOutcome, type MessageScope, type PublishInfo, type PublishScope } from './instrumentation.js'
import { collectLag } from './lag.js'
import { otel, type Otel } from './otel.js'
import { outboxTotal } from './registry.js'
import { errorType, messagingSystem } from './tracing.js'

/** The bucket boundaries the messaging conventions recommend for their durations, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

/** Counts by attribute set (the cached objects: compared by identity), read by an observable counter at collection. */
type Tally = Map<Attributes, number>

interface Instruments {
  /** Publishes, for `messaging.client.sent.messages`. */
  sent: Tally
  operationDuration: Histogram
  /** Settled messages, for `messaging.client.consumed.messages`. */
  consumed: Tally
  processDuration: Histogram
}

const count = (tally: Tally, attributes: Attributes): void => { tally.set(attributes, (tally.get(attributes) ?? 0) + 1) }
const observeTally = (tally: Tally) => (result: ObservableResult): void => { for (const [attributes, n] of tally) result.observe(n, attributes) }

/** Messages handed to the runner and not settled yet, by group (only those counted while a provider was registered). */
const inFlight = new Map<string, number>()

function create (meter: Meter): Instruments {
  const message = '{message}'
  meter.createObservableGauge('herald.consumer.lag', { unit: message, description: 'Messages of a topic the group has not settled yet, read from the broker at collection.' })
    .addCallback(async (result) => {
      for (const { group, topic, messages } of await collectLag()) result.observe(messages, { 'messaging.destination.name': topic, 'messaging.consumer.group.name': group })
    })
  meter.createObservableGauge('herald.consumer.in_flight', { unit: message, description: 'Messages handed to the runner and not settled yet.' })
    .addCallback((result) => { for (const [group, n] of inFlight) result.observe(n, { 'messaging.consumer.group.name': group }) })
  meter.createObservableGauge('herald.outbox.pending', { unit: message, description: 'Messages in the outbox not yet relayed to the broker.' })
    .addCallback(result => result.observe(outboxTotal(o => o.pending)))
  meter.createObservableGauge('herald.outbox.size', { unit: 'By', description: 'Bytes the outbox holds on disk.' })
    .addCallback(result => result.observe(outboxTotal(o => o.bytes)))
  meter.createObservableGauge('herald.outbox.oldest_age', { unit: 's', description: 'How long the oldest message in the outbox has waited (0 when empty).' })
    .addCallback(result => result.observe(outboxTotal(o => (o.oldestAgeMs ?? 0) / 1000, true)))
  // Tallies of this provider only: a provider registered later starts from zero, as its own counters would.
  const sent: Tally = new Map()
  const consumed: Tally = new Map()
  meter.createObservableCounter('messaging.client.sent.messages', { unit: message, description: 'Messages the producer attempted to send to the broker (acknowledged, stored in the outbox, or failed: error.type).' })
    .addCallback(observeTally(sent))
  meter.createObservableCounter('messaging.client.consumed.messages', { unit: message, description: 'Messages delivered to the application, counted once when settled, by herald.outcome.' })
    .addCallback(observeTally(consumed))
  return {
    sent,
    operationDuration: meter.createHistogram('messaging.client.operation.duration', { unit: 's', description: 'Time from a publish call to its answer (the broker\'s acknowledgement, or the outbox\'s fsync).', advice: { explicitBucketBoundaries: DURATION_BUCKETS } }),
    consumed,
    processDuration: meter.createHistogram('messaging.process.duration', { unit: 's', description: 'Time one handler attempt took, by herald.outcome.', advice: { explicitBucketBoundaries: DURATION_BUCKETS } })
  }
}

let current: { provider: MeterProvider, instruments: Instruments | undefined } | undefined

/** The instruments of the registered MeterProvider, made once per provider; undefined for the no-op one. */
function instruments (api: Otel): Instruments | undefined {
  const provider = api.metrics.getMeterProvider()
  if (current?.provider !== provider) {
    const meter = provider.getMeter('herald')
    current = { provider, instruments: meter === api.createNoopMeter() ? undefined : create(meter) }
  }
  return current.instruments
}

/**
 * An attribute set and the same with each `error.type` seen (a code or a class name: bounded),
 * each built once and reused by every record (the SDK hashes them, never changes them).
 */
class AttributeSet {
  readonly #failed = new Map<string, Attributes>()
  constructor (readonly ok: Attributes) {}

  /** The set for an outcome with `error` (none: `ok`). */
  with (error: unknown): Attributes {
    if (error === undefined) return this.ok
    const type = errorType(error)
    let failed = this.#failed.get(type)
    if (failed === undefined) this.#failed.set(type, failed = { ...this.ok, 'error.type': type })
    return failed
  }
}

/** The attributes of a publish, by broker and topic. */
const sendAttributes = new TupleCache<AttributeSet>((broker, topic) => new AttributeSet({
  'messaging.system': messagingSystem(broker),
  'messaging.destination.name': topic,
  'messaging.operation.name': 'send',
  'messaging.operation.type': 'send'
}))

/** The attributes of a consumed message, by broker, topic and group, and then by outcome. */
const processAttributes = new TupleCache<Record<ConsumeOutcome, AttributeSet>>((broker, topic, group) => {
  const base: Attributes = {
    'messaging.system': messagingSystem(broker),
    'messaging.destination.name': topic,
    'messaging.consumer.group.name': group,
    'messaging.operation.name': 'process',
    'messaging.operation.type': 'process'
  }
  return perOutcome(outcome => new AttributeSet({ ...base, 'herald.outcome': outcome }))
})

class PublishMeasure implements PublishScope {
  readonly #start = performance.now()
  constructor (private readonly i: Instruments, private readonly attributes: AttributeSet) {}

  end (error?: unknown): void {
    const a = this.attributes.with(error)
    count(this.i.sent, a)
    this.i.operationDuration.record(since(this.#start), a)
  }
}

function publishMetrics (api: Otel, info: PublishInfo): PublishScope | undefined {
  if (!info.tracing) return undefined
  const i = instruments(api)
  if (i === undefined) return undefined
  return new PublishMeasure(i, sendAttributes.get(info.broker, info.message.topic))
}

function consumeMetrics (api: Otel, info: ConsumeInfo): MessageScope | undefined {
  if (!info.tracing) return undefined
  const i = instruments(api)
  if (i === undefined) return undefined
  const { group } = info
  const byOutcome = processAttributes.get(info.broker, info.delivery.topic, group)
  inFlight.set(group, (inFlight.get(group) ?? 0) + 1)
  return new ConsumeMeasure(i, group, byOutcome)
}

class ConsumeMeasure extends MeasuredMessage {
  constructor (private readonly i: Instruments, private readonly group: string, private readonly byOutcome: Record<ConsumeOutcome, AttributeSet>) {
    super()
  }

  attempted (seconds: number, outcome: ConsumeOutcome, error: unknown): void {
    this.i.processDuration.record(seconds, this.byOutcome[outcome].with(error))
  }

  settled (outcome: ConsumeOutcome): void {
    inFlight.set(this.group, inFlight.get(this.group)! - 1)
    count(this.i.consumed, this.byOutcome[outcome].ok)
  }
}

if (otel !== undefined) {
  const api = otel
  subscribe({ publish: info => publishMetrics(api, info), consume: info => consumeMetrics(api, info) })
}
