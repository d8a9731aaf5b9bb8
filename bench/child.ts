// One contender in one fresh process: reads its task from HERALD_BENCH_TASK, runs it, prints
// BENCH_READY (when it consumes and is ready) and one BENCH_RESULT line. Started by run.ts.
import { readTask } from './common.js'

const task = readTask()
const [kind] = task.contender.split(':')
try {
  await runContender()
} catch (err) {
  // Some peers log nothing (their logger is off): the runner shows this stderr on failure.
  console.error(err)
  process.exit(1)
}
// Clients that keep a timer or a socket must not keep a finished contender alive.
process.exit(0)

async function runContender (): Promise<void> {
switch (kind) {
  case 'herald':
    await (await import('./contenders/herald.js')).run(task)
    break
  case 'herald-batch':
    await (await import('./contenders/herald.js')).run(task, {}, true)
    break
  case 'herald-untraced':
    await (await import('./contenders/herald.js')).run(task, { tracing: false })
    break
  case 'herald-otel':
  case 'herald-otel-sampled':
  case 'herald-sdk':
    await (await import('./contenders/herald-otel.js')).run(task, kind !== 'herald-sdk', kind === 'herald-otel-sampled')
    break
  case 'raw':
  case 'raw-bare':
    await (await import('./contenders/raw.js')).run(task, kind === 'raw-bare')
    break
  case 'raw-otel':
    await (await import('./contenders/raw-otel.js')).run(task)
    break
  case 'raw-platformatic':
    await (await import('./contenders/raw.js')).run(task, false, 'platformatic')
    break
  case 'moleculer':
    await (await import('./contenders/moleculer.js')).run(task)
    break
  case 'nest':
    await (await import('./contenders/nest.js')).run(task)
    break
  case 'fastify':
    await (await import('./contenders/http-fastify.js')).run(task)
    break
  case 'express':
    await (await import('./contenders/http-express.js')).run(task)
    break
  default:
    throw new Error(`unknown contender "${task.contender}"`)
}
}
