/**
 * `herald/metrics`: Prometheus metrics of every Messaging instance and runner in the
 * process, registered in a prom-client `Registry` (prom-client is an optional peer
 * dependency: install it to use this export).
 */
import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'
import type { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ConfigError } from '../lib/errors.js'
import { MeasuredMessage, perOutcome, secondsSince as since, subscribe, TupleCache, type ConsumeOutcome, type PublishScope } from '../lib/observability/instrumentation.js'
import { collectLag } from '../lib/observability/lag.js'
import { outboxTotal } from '../lib/observability/registry.js'
import type { OutboxStats } from '../lib/outbox/outbox.js'

export interface HeraldMetricsOptions {
  /** Where to register. Default prom-client's global registry. */
  registry?: Registry
  /** Prefix of every metric name. Default `herald_`. */
  prefix?: string
  /** Labels with fixed values added to every metric (e.g. `{ service: 'orders' }`). */
  labels?: Record<string, string>
}

export interface HeraldMetrics {
  readonly registry: Registry
  /** Stops feeding and unregisters the metrics. */
  close(): void
}

const installed = new Map<Registry, Map<string, HeraldMetrics>>()

/**
 * Registers Herald's metrics in `registry` and feeds them from every Messaging instance
 * and runner in the process. Calling it again with the same registry and prefix returns
 * the same metrics. No label takes unbounded values: topics, groups, outcomes.
 *
 * @example
 * import { Registry } from 'prom-client'
 * import { heraldMetrics } from 'herald/metrics'
 * const registry = new Registry()
 * heraldMetrics({ registry, labels: { service: 'orders' } })
 * app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()))
 */
export function heraldMetrics (options: HeraldMetricsOptions = {}): HeraldMetrics {
  const { Counter, Gauge, Histogram, register: globalRegistry } = promClient()
  const registry = options.registry ?? globalRegistry
  const prefix = options.prefix ?? 'herald_'
  const existing = installed.get(registry)?.get(prefix)
  if (existing !== undefined) return existing
  const fixed = options.labels ?? {}
  const extra = Object.keys(fixed)
  const registers = [registry]
  const l = <T extends Record<string, string>>(labels: T): T & Record<string, string> => ({ ...labels, ...fixed })

  const published = new Counter({ name: `${prefix}published_messages_total`, help: 'Messages published, by outcome: ok (acknowledged by the broker, or stored in the outbox) or error.', labelNames: ['topic', 'outcome', ...extra], registers })
  const publishDuration = new Histogram({ name: `${prefix}publish_duration_seconds`, help: 'Time from a publish call to its answer (the broker\'s acknowledgement, or the outbox\'s fsync).', labelNames: ['topic', ...extra], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers })
  const consumed = new Counter({ name: `${prefix}consumed_messages_total`, help: 'Consumed messages by how they ended: ack, dead_letter, skipped (no handler for the event), released (given back at a shutdown); retry counts each failed attempt that is retried.', labelNames: ['topic', 'group', 'outcome', ...extra], registers })
  const processDuration = new Histogram({ name: `${prefix}process_duration_seconds`, help: 'Time a handler attempt took, whatever its outcome.', labelNames: ['topic', 'group', ...extra], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers })
  const inFlight = new Gauge({ name: `${prefix}in_flight_messages`, help: 'Messages handed to the runner and not settled yet (running, queued behind a key, or waiting for a retry).', labelNames: ['group', ...extra], registers })
  const sum = (pick: (o: OutboxStats) => number, max = false) => function (this: Gauge) { this.set(fixed, outboxTotal(pick, max)) }
  new Gauge({ name: `${prefix}outbox_pending_messages`, help: 'Messages in the outbox not yet relayed to the broker.', labelNames: extra, registers, collect: sum(o => o.pending) })
  new Gauge({ name: `${prefix}outbox_bytes`, help: 'Bytes the outbox holds on disk.', labelNames: extra, registers, collect: sum(o => o.bytes) })
  new Gauge({ name: `${prefix}outbox_oldest_age_seconds`, help: 'How long the oldest message in the outbox has waited (0 when empty).', labelNames: extra, registers, collect: sum(o => (o.oldestAgeMs ?? 0) / 1000, true) })
  new Gauge({
    name: `${prefix}consumer_lag_messages`,
    help: 'Messages of a topic the group has not settled yet, read from the broker at scrape time.',
    labelNames: ['topic', 'group', ...extra],
    registers,
    async collect () {
      this.reset()
      for (const { group, topic, messages } of await collectLag()) this.set(l({ topic, group }), messages)
    }
  })

  // The labelled children, made once per topic (and group): no label object is built per message.
  const byTopic = new TupleCache(topic => ({
    ok: published.labels(l({ topic, outcome: 'ok' })),
    error: published.labels(l({ topic, outcome: 'error' })),
    duration: publishDuration.labels(l({ topic }))
  }))
  const byGroup = new TupleCache((topic, group) => ({
    duration: processDuration.labels(l({ topic, group })),
    inFlight: inFlight.labels(l({ group })),
    consumed: perOutcome(outcome => consumed.labels(l({ topic, group, outcome })))
  }))
  type Children = ReturnType<typeof byGroup.get>

  class Publish implements PublishScope {
    readonly #start = performance.now()
    constructor (private readonly children: ReturnType<typeof byTopic.get>) {}
    end (error?: unknown): void {
      (error === undefined ? this.children.ok : this.children.error).inc()
      this.children.duration.observe(since(this.#start))
    }
  }

  class Consume extends MeasuredMessage {
    constructor (private readonly children: Children) {
      super()
      children.inFlight.inc()
    }

    attempted (seconds: number, outcome: ConsumeOutcome): void {
      this.children.duration.observe(seconds)
      if (outcome === 'retry') this.children.consumed.retry.inc()
    }

    settled (outcome: ConsumeOutcome): void {
      this.children.inFlight.dec()
      this.children.consumed[outcome].inc()
    }
  }

  const unsubscribe = subscribe({
    publish: ({ message }) => new Publish(byTopic.get(message.topic)),
    consume: ({ group, delivery }) => new Consume(byGroup.get(delivery.topic, group))
  })
  const handle: HeraldMetrics = {
    registry,
    close: () => {
      unsubscribe()
      for (const name of ['published_messages_total', 'publish_duration_seconds', 'consumed_messages_total', 'process_duration_seconds', 'in_flight_messages', 'outbox_pending_messages', 'outbox_bytes', 'outbox_oldest_age_seconds', 'consumer_lag_messages']) {
        registry.removeSingleMetric(`${prefix}${name}`)
      }
      installed.get(registry)?.delete(prefix)
    }
  }
  installed.set(registry, (installed.get(registry) ?? new Map<string, HeraldMetrics>()).set(prefix, handle))
  return handle
}

/**
 * prom-client, an optional peer dependency, loaded when metrics are asked for (it is a
 * CommonJS package, so this is synchronous), so that importing herald/metrics never fails
 * and a missing prom-client is a ConfigError saying what to install.
 */
function promClient (): typeof PromClient {
  try {
    return createRequire(import.meta.url)('prom-client') as typeof PromClient
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err
    throw new ConfigError('herald/metrics', 'needs the package prom-client, which is not installed: run `npm i prom-client` in your project')
  }
}
