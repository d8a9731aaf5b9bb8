// The fault harness, short version, on each real broker: a private broker instance, a real
// service (Fastify + herald with its outbox) and worker process, a few hundred requests, one
// fault of each kind. Nothing answered 2xx may be lost, and every poison message must be
// dead-lettered with its reason. The full run (thousands of requests) is `npm run faults`.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { parseReport } from '../scripts/faults/report.js'
import { brokerSelected } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** One short run takes about 25 s (Redis) to 80 s (Kafka, whose crash restart alone takes ~15 s). */
const RUN_TIMEOUT_MS = 240_000

interface Run { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

async function runHarness (broker: string): Promise<Run> {
  const t0 = Date.now()
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/faults/run.ts', '--broker', broker, '--short'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HERALD_LOG_LEVEL: 'warn' }
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // The harness cleans up on SIGTERM (brokers, children, temp dir); SIGKILL if it does not.
  const term = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS - 20_000)
  const kill = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS - 5_000)
  const killOnExit = (): void => { child.kill('SIGKILL') }
  process.once('exit', killOnExit)
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.once('close', (c, s) => resolve([c, s])))
    return { code, signal, stdout, stderr, ms: Date.now() - t0 }
  } finally {
    clearTimeout(term)
    clearTimeout(kill)
    process.off('exit', killOnExit)
  }
}

describe('fault harness (short run on each real broker)', function () {
  this.timeout(RUN_TIMEOUT_MS)

  for (const broker of ['kafka', 'rabbitmq', 'redis'] as const) {
    const it_ = brokerSelected(broker) ? it : it.skip
    it_(`${broker}: a broker crash, a cut and a SIGKILL of the worker, a SIGKILL of the service, poison messages: nothing answered 2xx is lost`, async function () {
      const run = await runHarness(broker)
      const report = parseReport(run.stdout)
      const context = `harness exit ${run.code ?? run.signal} after ${(run.ms / 1000).toFixed(0)} s\n--- stdout\n${run.stdout}\n--- stderr (last 4000 chars)\n${run.stderr.slice(-4000)}`
      expect(report, `no report table in the output; ${context}`).to.not.equal(undefined)
      console.log(`\n${run.stdout.trim().split('\n').map(l => `      ${l}`).join('\n')}\n      (${(run.ms / 1000).toFixed(0)} s)\n`)
      expect(report!.lost, `lost events; ${context}`).to.equal(0)
      expect(report!.poisonAccounted, `poison messages not dead-lettered with their reason; ${context}`).to.equal(report!.poisonSent)
      expect(report!.poisonSent).to.equal(5)
      expect(report!.sent).to.be.greaterThan(100)
      expect(report!.ok, `too few requests answered 2xx; ${context}`).to.be.greaterThan(report!.sent / 2)
      expect(run.code, context).to.equal(0)
    })
  }
})
