// HTTP load with autocannon from the runner's process: 50 connections, a fixed number of
// requests (so every request sent is answered and can be checked against the broker).
import autocannon from 'autocannon'
import { order } from './common.js'

export const CONNECTIONS = 50

export interface HttpLoad { rps: number, ok: number, non2xx: number, errors: number }

export async function loadHttp (port: number, amount: number): Promise<HttpLoad> {
  const body = JSON.stringify(order(1))
  const start = performance.now()
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/orders`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    amount
  })
  const seconds = (performance.now() - start) / 1000
  return { rps: result['2xx'] / seconds, ok: result['2xx'], non2xx: result.non2xx, errors: result.errors + result.timeouts }
}
