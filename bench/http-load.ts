// HTTP load with autocannon from the runner's process: 50 connections, a fixed number of
// requests (so every request sent is answered and can be checked against the broker).
import autocannon, { type Result } from 'autocannon'
import { order } from './common.js'

export const CONNECTIONS = 50

export interface HttpLoad { rps: number, ok: number, non2xx: number, errors: number }

export async function loadHttp (port: number, amount: number): Promise<HttpLoad> {
  const body = JSON.stringify(order(1))
  const start = performance.now()
  // autocannon notices that `amount` is reached on its one-second tick, so its own end (and
  // its `duration`) rounds the run up to a whole second: time the run to its last answer.
  let last = start
  const result = await new Promise<Result>((resolve, reject) => {
    const run = autocannon({
      url: `http://127.0.0.1:${port}/orders`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      connections: CONNECTIONS,
      amount,
      // A naive route on a loaded machine can take longer than autocannon's 10 s default.
      timeout: 30
    }, (err, res) => { if (err !== null && err !== undefined) reject(err); else resolve(res) })
    run.on('response', () => { last = performance.now() })
  })
  const seconds = (last - start) / 1000
  return { rps: result['2xx'] / seconds, ok: result['2xx'], non2xx: result.non2xx, errors: result.errors + result.timeouts }
}
