// The load generator: a steady stream of POST /orders at a fixed rate, bounded in count and
// in time, each request with a unique id, and what became of each (2xx, 503, error).
import http from 'node:http'

export type Outcome = number | `error: ${string}`

export interface LoadOptions {
  /** The service's port now (it may change if the service is restarted). */
  port: () => number
  runId: string
  /** Requests per second. */
  rate: number
  /** At most this many requests. */
  maxRequests: number
  /** And for at most this long, in ms. */
  durationMs: number
  /** A request without an answer after this long counts as an error. */
  requestTimeoutMs: number
  /** At most this many requests waiting for an answer; the stream slows down beyond. */
  maxInFlight?: number
}

export interface LoadResult {
  /** requestId → status code, or the error. */
  outcomes: Map<string, Outcome>
  /** requestId → when it was sent (ms since the epoch). */
  sentAt: Map<string, number>
  /** Milliseconds from send to answer, of the 2xx. */
  latencies: number[]
  startedAt: number
  /** When the last request was sent. */
  lastSentAt: number
  /** When the last answer came. */
  endedAt: number
}

export function requestIdOf (runId: string, n: number): string {
  return `${runId}-${String(n).padStart(6, '0')}`
}

export async function runLoad (options: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  const outcomes = new Map<string, Outcome>()
  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  const maxInFlight = options.maxInFlight ?? 2_000
  const startedAt = Date.now()
  let lastSentAt = startedAt
  let sent = 0
  let inFlight = 0
  const pending = new Set<Promise<void>>()

  const send = (n: number): void => {
    const requestId = requestIdOf(options.runId, n)
    const body = JSON.stringify({ requestId, n })
    const t0 = Date.now()
    sentAt.set(requestId, t0)
    inFlight++
    const done = new Promise<void>(resolve => {
      let settled = false
      const settle = (outcome: Outcome): void => {
        if (settled) return
        settled = true
        outcomes.set(requestId, outcome)
        if (typeof outcome === 'number' && outcome >= 200 && outcome < 300) latencies.push(Date.now() - t0)
        inFlight--
        resolve()
      }
      const req = http.request({
        agent,
        host: '127.0.0.1',
        port: options.port(),
        path: '/orders',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
      }, (res) => {
        res.resume()
        res.once('end', () => settle(res.statusCode ?? 0))
        res.once('error', (err) => settle(`error: ${err.message}`))
      })
      req.setTimeout(options.requestTimeoutMs, () => req.destroy(new Error(`no answer within ${options.requestTimeoutMs} ms`)))
      req.once('error', (err: NodeJS.ErrnoException) => settle(`error: ${err.code ?? err.message}`))
      req.end(body)
    })
    pending.add(done)
    void done.then(() => pending.delete(done))
  }

  await new Promise<void>(resolve => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - startedAt
      if (sent >= options.maxRequests || elapsed >= options.durationMs) {
        clearInterval(timer)
        resolve()
        return
      }
      const due = Math.min(options.maxRequests, Math.floor(elapsed / 1000 * options.rate) + 1)
      while (sent < due && inFlight < maxInFlight) {
        send(sent++)
        lastSentAt = Date.now()
      }
    }, 5)
  })
  await Promise.all([...pending])
  agent.destroy()
  return { outcomes, sentAt, latencies, startedAt, lastSentAt, endedAt: Date.now() }
}
