/**
 * Where a runner is in its life, for liveness and readiness probes:
 * - `starting`: subscribing; not ready yet (a group may not have its partitions).
 * - `ready`: every group subscribed and receiving.
 * - `draining`: stopping (SIGTERM or `stop()`): from the first moment, so a load balancer
 *   stops sending work while running handlers finish.
 * - `stopped`: every group left.
 * Alive in every state: a draining worker must not be killed for failing its liveness probe.
 */
export type RunnerState = 'starting' | 'ready' | 'draining' | 'stopped'

export class Readiness {
  state: RunnerState = 'starting'

  get ready (): boolean {
    return this.state === 'ready'
  }
}

/** The runners started on each Messaging instance, while they run: what an app's `/readyz` reflects. */
const runners = new WeakMap<object, Set<Readiness>>()

/** Counts a runner in its messaging's readiness until the returned function is called. */
export function trackRunner (messaging: object, readiness: Readiness): () => void {
  let set = runners.get(messaging)
  if (set === undefined) runners.set(messaging, set = new Set())
  set.add(readiness)
  return () => { set.delete(readiness) }
}

/** The states of the runners started on `messaging` and not stopped yet. */
export function runnerStates (messaging: object): RunnerState[] {
  return [...runners.get(messaging) ?? []].map(r => r.state)
}
