// Liveness and readiness of a web service, for the Fastify plugin's `health` option and
// Express's `healthRoutes()`: alive while the process answers; ready while the broker
// answers (or an outbox with room takes the sends) and every runner started on the same
// messaging is subscribed (not starting, not draining).
import { ConfigError } from '../lib/errors.js'
import { checkKnownKeys } from '../lib/brokers/config-checks.js'
import type { Messaging } from '../lib/messaging.js'
import { runnerStates } from '../lib/runner/readiness.js'

/** `health: true` (the default paths) or the paths to serve; `false` leaves one out. */
export type HealthOption = boolean | { livez?: string | false, readyz?: string | false }

export interface HealthPaths { livez: string | false, readyz: string | false }

const DEFAULT_PATHS: HealthPaths = { livez: '/livez', readyz: '/readyz' }

function checkPath (option: string, value: unknown, fallback: string): string | false {
  if (value === undefined) return fallback
  if (value === false) return false
  if (typeof value !== 'string' || !value.startsWith('/')) throw new ConfigError(option, `must be a path starting with "/" (or false to leave it out), got ${JSON.stringify(value)}`)
  return value
}

/** The paths of a `health` option, or undefined when there are none to serve. Throws a `ConfigError` for a bad value. */
export function healthPaths (value: unknown, option = 'health'): HealthPaths | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return DEFAULT_PATHS
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(option, `must be true, false or { livez, readyz } (paths), got ${JSON.stringify(value)}`)
  }
  checkKnownKeys(option, value, ['livez', 'readyz'])
  const v = value as { livez?: unknown, readyz?: unknown }
  return { livez: checkPath(`${option}.livez`, v.livez, DEFAULT_PATHS.livez as string), readyz: checkPath(`${option}.readyz`, v.readyz, DEFAULT_PATHS.readyz as string) }
}

/** The answer to a probe: the status code and the JSON body. */
export interface ProbeAnswer { status: number, body: Record<string, unknown> }

/** Alive as long as the process answers: a draining service must not be killed for it. */
export function livenessAnswer (): ProbeAnswer {
  return { status: 200, body: { status: 'alive' } }
}

/**
 * Ready (200) unless the broker does not answer and no outbox with room takes the sends,
 * or a runner on this messaging is starting or draining (503, with the reasons).
 */
export async function readinessAnswer (messaging: Messaging): Promise<ProbeAnswer> {
  const reasons: string[] = []
  const health = await messaging.health()
  const outbox = health.outbox
  // An outbox that still has room keeps the service useful through a broker outage.
  const outboxTakesSends = outbox !== undefined && outbox.bytes < outbox.maxBytes
  if (!health.ok && !outboxTakesSends) {
    reasons.push(outbox === undefined ? `the broker does not answer: ${health.detail}` : `the broker does not answer and the outbox is full: ${health.detail}`)
  }
  const runners = runnerStates(messaging)
  for (const state of runners) if (state !== 'ready') reasons.push(`a consumer runner is ${state}`)
  const body: Record<string, unknown> = {
    status: reasons.length === 0 ? 'ready' : 'not ready',
    ...(reasons.length === 0 ? {} : { reasons }),
    broker: { ok: health.ok, detail: health.detail },
    runners
  }
  return { status: reasons.length === 0 ? 200 : 503, body }
}
