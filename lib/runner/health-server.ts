// The small HTTP server a worker has none of: /livez, /readyz and /metrics for
// `herald consumer --http-port` and `startConsumers({ httpPort })`. It answers while the
// runner starts and drains, and closes once the runner stopped.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HandlerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Readiness } from './readiness.js'

export interface HealthServer {
  readonly port: number
  close(): Promise<void>
}

/** The Prometheus text of `herald/metrics` on prom-client's global registry, or undefined when prom-client is not installed. */
async function metricsText (): Promise<{ type: string, body: string } | undefined> {
  let metrics: typeof import('../../plugins/metrics.js')
  try {
    metrics = await import('../../plugins/metrics.js')
  } catch {
    return undefined
  }
  const { registry } = metrics.heraldMetrics()
  return { type: registry.contentType, body: await registry.metrics() }
}

function reply (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

/**
 * Listens on `port` (0: any free port) on every interface, as probes from the orchestrator need.
 * Rejects with a `HandlerError` when the port cannot be taken.
 */
export async function startHealthServer (port: number, readiness: Readiness, logger: Logger): Promise<HealthServer> {
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/livez') return reply(res, 200, { status: 'alive', state: readiness.state })
    if (path === '/readyz') return reply(res, readiness.ready ? 200 : 503, { status: readiness.ready ? 'ready' : 'not ready', state: readiness.state })
    if (path === '/metrics') {
      metricsText().then(text => {
        if (text === undefined) return reply(res, 404, { error: 'metrics need prom-client: npm install prom-client' })
        res.writeHead(200, { 'content-type': text.type })
        res.end(text.body)
      }, (err: unknown) => {
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'could not collect the metrics')
        reply(res, 500, { error: 'could not collect the metrics; see the log' })
      })
      return
    }
    reply(res, 404, { error: 'not found; the paths are /livez, /readyz and /metrics' })
  }
  const server: Server = createServer(handle)
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new HandlerError(`httpPort ${port}: cannot listen (${err.code ?? err.message}); choose a free port, or 0 for any`)))
    server.listen(port, () => resolve())
  })
  logger.info({ port: (server.address() as AddressInfo).port }, 'serving /livez, /readyz and /metrics')
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
