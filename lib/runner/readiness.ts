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
