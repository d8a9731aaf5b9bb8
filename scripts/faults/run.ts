// The fault harness: a real service (Fastify + herald, with the outbox when the library has
// one) and a real worker (startConsumers) on a private broker, a steady stream of HTTP
// requests, and on a schedule: poison messages from a raw client, a graceful broker restart
// (the service SIGKILLed and restarted while the broker is down, its outbox holding 2xx'd
// events), a cut of the worker's connection, a SIGKILL of the worker, and a crash (SIGKILL)
// restart of the broker. `--short` (CI) does one of each: poison, cut, worker SIGKILL, and
// one crash restart of the broker with the service SIGKILL in it. Then it waits for the
// drain and prints one table: nothing a 2xx promised may be lost.
//
//   npm run faults -- --broker kafka|rabbitmq|redis [--short] [--requests N] [--seconds S] [--keep]
//
// Exit code: 0 when nothing was lost and every poison message was dead-lettered with its
// reason; 1 when not; 2 when the harness itself could not run (a broker did not start, …).
// Everything it starts (brokers, proxy, service, worker) is stopped when it exits, and its
// temp dir removed (kept with --keep).
import { randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, fstatSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createBroker, type BrokerUnderTest, type RawDeadLetter } from './brokers.js'
import { deadLetterTopicOf, parseHandled, poisonMessages, SETTINGS_ENV, type ChildSettings, type DeadRecord, type HandledRecord, type HarnessBroker } from './common.js'
import { runLoad, type LoadResult } from './load.js'
import { installExitHandlers, onExit, sleep, startChild, stopChild, tail, waitReady, type Child } from '../../test/support/processes.js'
import { computeFigures, formatReport, type FaultEvent } from './report.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const HERE = fileURLToPath(new URL('.', import.meta.url))
const BROKERS: HarnessBroker[] = ['kafka', 'rabbitmq', 'redis']

interface Plan {
  broker: HarnessBroker
  mode: 'full' | 'short'
  rate: number
  requests: number
  durationMs: number
  drainTimeoutMs: number
  /** How long the broker stays down in a restart. */
  downMs: number
  /** How long the worker is cut off. */
  cutMs: number
  /** Pause between two faults. */
  gapMs: number
  concurrency: number
  publishTimeout: number
  keep: boolean
}

function usage (problem: string): never {
  process.stderr.write(`faults: ${problem}\nusage: npm run faults -- --broker kafka|rabbitmq|redis [--short] [--requests N] [--seconds S] [--keep]\n`)
  process.exit(2)
}

function plan (argv: string[]): Plan {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        broker: { type: 'string' },
        short: { type: 'boolean', default: false },
        requests: { type: 'string' },
        seconds: { type: 'string' },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false }
      },
      strict: true
    }))
  } catch (err) {
    usage((err as Error).message)
  }
  if (values.help === true) usage('help')
  const broker = values.broker as HarnessBroker | undefined
  if (broker === undefined || !BROKERS.includes(broker)) usage(`--broker must be one of ${BROKERS.join(', ')}; got ${JSON.stringify(values.broker)}`)
  const short = values.short === true
  // The short run must fit one fault of each kind in its load; Kafka's are the slowest
  // (a restart takes ~7 s, the worker freeze outlasts a 6 s session timeout).
  const defaultSeconds = short ? { kafka: 32, rabbitmq: 20, redis: 16 }[broker] : 60
  const seconds = values.seconds === undefined ? defaultSeconds : Number(values.seconds)
  if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) usage(`--seconds must be between 5 and 3600; got ${values.seconds}`)
  const requests = values.requests === undefined ? Math.round((short ? 15 : 200) * seconds) : Number(values.requests)
  if (!Number.isInteger(requests) || requests < 10 || requests > 1_000_000) usage(`--requests must be a whole number between 10 and 1000000; got ${values.requests}`)
  return {
    broker,
    mode: short ? 'short' : 'full',
    rate: Math.max(1, Math.round(requests / seconds)),
    requests,
    durationMs: seconds * 1000,
    drainTimeoutMs: short ? 45_000 : 120_000,
    downMs: short ? 1_500 : 3_000,
    // Kafka: a freeze just past the 6 s session timeout, so the group drops the worker.
    cutMs: broker === 'kafka' ? 7_500 : short ? 3_000 : 5_000,
    gapMs: short ? 500 : 3_000,
    concurrency: 8,
    publishTimeout: 3_000,
    keep: values.keep === true
  }
}

/** The library's outbox, if it has landed: the harness then runs the service with it. */
function outboxAvailable (): boolean {
  try {
    return existsSync(path.join(ROOT, 'lib/outbox')) && readFileSync(path.join(ROOT, 'lib/messaging.ts'), 'utf8').includes('outbox')
  } catch {
    return false
  }
}

/** Why a child failed to start: the last `SomethingError: …` line of its log, else the first line of `fallback`. */
function startFailure (logFile: string | undefined, fallback: string): string {
  let lines: string[] = []
  try { if (logFile !== undefined) lines = readFileSync(logFile, 'utf8').split('\n') } catch {}
  const line = lines.reverse().find(l => /^\s*[A-Za-z]*Error: /.test(l))
  return (line?.trim() ?? fallback.split('\n')[0] ?? '').slice(0, 300)
}

/** Reads the lines appended to a file since the last call. */
class Tail {
  readonly #file: string
  #offset = 0
  #partial = ''
  constructor (file: string) { this.#file = file }
  lines (): string[] {
    if (!existsSync(this.#file)) return []
    const fd = openSync(this.#file, 'r')
    try {
      const size = fstatSync(fd).size
      if (size <= this.#offset) return []
      const buffer = Buffer.alloc(size - this.#offset)
      readSync(fd, buffer, 0, buffer.length, this.#offset)
      this.#offset = size
      const text = this.#partial + buffer.toString('utf8')
      const parts = text.split('\n')
      this.#partial = parts.pop() ?? ''
      return parts.filter(l => l !== '')
    } finally {
      closeSync(fd)
    }
  }
}

async function main (): Promise<number> {
  const p = plan(process.argv.slice(2))
  installExitHandlers()
  const runId = `f${randomUUID().slice(0, 6)}`
  const t0 = Date.now()
  const say = (text: string): void => { process.stderr.write(`faults[${p.broker}] +${((Date.now() - t0) / 1000).toFixed(1)}s ${text}\n`) }
  const dir = mkdtempSync(path.join(os.tmpdir(), `herald-faults-${p.broker}-`))
  const forgetDir = onExit('tmp', () => { if (!p.keep) rmSync(dir, { recursive: true, force: true }) })

  const topic = `faults-orders-${runId}`
  const group = `faults-worker-${runId}`
  const deadLetterGroup = `faults-dlq-reader-${runId}`
  const dlqTopic = deadLetterTopicOf({ topic, group })
  const handledFile = path.join(dir, 'handled.log')
  const deadFile = path.join(dir, 'dead.log')
  const outbox = outboxAvailable() ? { dir: path.join(dir, 'outbox'), maxBytes: 64 * 2 ** 20 } : undefined
  if (outbox !== undefined) mkdirSync(outbox.dir, { recursive: true })

  const broker: BrokerUnderTest = createBroker(p.broker, dir, runId)
  let service: Child | undefined
  let worker: Child | undefined
  let servicePort = 0
  const unexpectedExits: string[] = []
  const killedWorkers: number[] = []
  const killedServices: number[] = []
  const faults: FaultEvent[] = []
  let expectingExit = false
  let workerBoots = 0
  let serviceBoots = 0
  let failed = false

  const childEnv = (settings: ChildSettings): NodeJS.ProcessEnv => ({
    ...process.env,
    [SETTINGS_ENV]: JSON.stringify(settings),
    HERALD_LOG_LEVEL: 'warn'
  })
  const nodeArgs = (script: string): string[] => ['--import', 'tsx', path.join(HERE, script)]

  /**
   * Starts a child and waits until it is ready. A child that dies later, not by the
   * harness's hand, is counted and replaced (as systemd or Kubernetes would); one that dies
   * before it is ready is counted and started again, up to 3 times.
   */
  const startProcess = async (kind: 'worker' | 'service', settings: () => ChildSettings, killed: number[], readyTimeoutMs: number): Promise<{ child: Child, port: number }> => {
    for (let attempt = 1; ; attempt++) {
      const n = kind === 'worker' ? ++workerBoots : ++serviceBoots
      const child = startChild(`${kind} #${n}`, process.execPath, nodeArgs(`${kind}.ts`), {
        logFile: path.join(dir, `${kind}.log`),
        ipc: true,
        cwd: ROOT,
        env: childEnv(settings())
      })
      if (kind === 'worker') worker = child
      else service = child
      let ready = false
      void child.exited.then(how => {
        const current = kind === 'worker' ? worker : service
        if (!ready || expectingExit || current !== child || killed.includes(child.process.pid ?? -1)) return
        unexpectedExits.push(`${child.name} exited (${how})`)
        say(`${child.name} exited unexpectedly (${how}); starting another`)
        void startProcess(kind, settings, killed, readyTimeoutMs).catch(err => say(`could not restart the ${kind}: ${(err as Error).message}`))
      })
      try {
        const message = await waitReady<{ ready: boolean, port?: number }>(child, readyTimeoutMs)
        ready = true
        return { child, port: message.port ?? 0 }
      } catch (err) {
        await stopChild(child, 'SIGKILL', 5_000)
        const why = startFailure(child.logFile, (err as Error).message)
        unexpectedExits.push(`${child.name} failed to start: ${why}`)
        say(`${child.name} failed to start (attempt ${attempt} of 3): ${why}`)
        if (attempt >= 3 || expectingExit) throw err
        await sleep(1_000)
      }
    }
  }

  const startWorker = async (): Promise<Child> => (await startProcess('worker', () => ({
    broker: p.broker, connection: broker.workerConnection(), topic, group, deadLetterGroup, handledFile, deadFile, concurrency: p.concurrency
  }), killedWorkers, 120_000)).child

  const startService = async (): Promise<Child> => {
    const { child, port } = await startProcess('service', () => ({
      broker: p.broker, connection: broker.serviceConnection(), topic, group, deadLetterGroup, outbox, publishTimeout: p.publishTimeout, port: servicePort
    }), killedServices, 60_000)
    servicePort = port
    return child
  }

  /** The service's outbox now, or undefined (no outbox, or the service does not answer). */
  const outboxStats = async (): Promise<{ pending: number, undeliverable: number, state: string } | undefined> => {
    if (outbox === undefined || servicePort === 0) return undefined
    try {
      const res = await fetch(`http://127.0.0.1:${servicePort}/faults/outbox`, { signal: AbortSignal.timeout(2_000) })
      const body = await res.json() as { outbox: { pending: number, undeliverable: number, state: string } | null }
      return body.outbox ?? undefined
    } catch {
      return undefined
    }
  }
  let outboxPeak = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const stats = await outboxStats()
      if (stats !== undefined) outboxPeak = Math.max(outboxPeak, stats.pending)
      await sleep(250)
    }
  })()

  const fault = async (name: string, action: () => Promise<string>): Promise<void> => {
    const startedAt = Date.now()
    say(`${name}…`)
    let detail: string
    try {
      detail = await action()
    } catch (err) {
      detail = `FAILED: ${(err as Error).message.split('\n')[0]}`
      failed = true
    }
    const endedAt = Date.now()
    faults.push({ name, startedAt, endedAt, detail })
    say(`${name}: ${detail} (${((endedAt - startedAt) / 1000).toFixed(1)} s)`)
  }

  try {
    say(`starting the private ${p.broker} broker in ${dir}`)
    await broker.start()
    say(`broker up: ${broker.describe()}`)
    await startWorker()
    await startService()
    say(`worker and service ready (service on 127.0.0.1:${servicePort}, outbox ${outbox === undefined ? 'not available in the library' : 'on'}); ${p.requests} requests at ${p.rate} req/s for at most ${p.durationMs / 1000} s`)

    const poison = poisonMessages(runId)
    const loadPromise = runLoad({ port: () => servicePort, runId, rate: p.rate, maxRequests: p.requests, durationMs: p.durationMs, requestTimeoutMs: 30_000 })

    // The faults, one after the other, each no earlier than its share of the load's duration.
    const startedAt = Date.now()
    const at = async (fraction: number): Promise<void> => {
      const last = faults.length === 0 ? startedAt : Math.max(...faults.map(f => f.endedAt))
      const when = Math.max(startedAt + fraction * p.durationMs, last + p.gapMs)
      await sleep(Math.max(0, when - Date.now()))
    }
    await at(0.08)
    await fault(`poison ×${poison.length}`, async () => {
      await broker.sendPoison(topic, poison)
      return `${poison.map(m => m.name).join(', ')} sent with the raw client`
    })
    // With an outbox, the service is SIGKILLed while the broker is down in the first restart
    // (its spool holds 2xx'd events then) and started again on the same spool, still during
    // the outage: what the dead process promised must be relayed by the new one.
    // (`killService` runs inside `broker.restart`, while the broker is down and the load flows.)
    let serviceFault: FaultEvent | undefined
    const killService = outbox === undefined
      ? undefined
      : async (): Promise<void> => {
            // Let the outage outlast publishTimeout, so that the spool holds 2xx'd events.
        for (let i = 0; i < 40 && ((await outboxStats())?.pending ?? 0) === 0; i++) await sleep(250)
        const startedAt = Date.now()
        const victim = service
        const held = await outboxStats()
        let detail: string
        try {
          if (victim?.process.pid === undefined) throw new Error('no service')
          killedServices.push(victim.process.pid)
          const how = await stopChild(victim, 'SIGKILL', 5_000)
          const t = Date.now()
          const next = await startService()
          detail = `service pid ${victim.process.pid} killed (${how}) with ${held?.pending ?? '?'} events in its outbox; pid ${next.process.pid} started on the same spool in ${((Date.now() - t) / 1000).toFixed(1)} s, broker still down`
        } catch (err) {
          detail = `FAILED: ${(err as Error).message.split('\n')[0]}`
          failed = true
        }
        serviceFault = { name: 'service SIGKILL', startedAt, endedAt: Date.now(), detail }
        say(`service SIGKILL: ${detail}`)
      }
    const cut = async (): Promise<void> => await fault('worker connection cut', async () => {
      const pid = worker?.process.pid
      if (pid === undefined) throw new Error('no worker')
      return await broker.cutWorker(pid, p.cutMs)
    })
    const killWorker = async (): Promise<void> => await fault('worker SIGKILL', async () => {
      const victim = worker
      if (victim?.process.pid === undefined) throw new Error('no worker')
      killedWorkers.push(victim.process.pid)
      const how = await stopChild(victim, 'SIGKILL', 5_000)
      const t = Date.now()
      const next = await startWorker()
      return `worker pid ${victim.process.pid} killed (${how}); pid ${next.process.pid} started and subscribed in ${((Date.now() - t) / 1000).toFixed(1)} s`
    })
    const restart = async (n: number, how: 'graceful' | 'crash', whileDown?: () => Promise<void>): Promise<void> => {
      await fault(`broker restart ${n}`, async () => await broker.restart(how, p.downMs, whileDown))
      if (serviceFault !== undefined) faults.push(serviceFault)
      serviceFault = undefined
    }
    if (p.mode === 'full') {
      // Two broker restarts, a graceful one (with the service SIGKILL) and a crash, around the worker faults.
      await at(0.15)
      await restart(1, 'graceful', killService)
      await at(0.35)
      await cut()
      await at(0.55)
      await killWorker()
      await at(0.75)
      await restart(2, 'crash')
    } else {
      // One fault of each kind; the broker crash last, so its slow comeback (Kafka: ~15 s)
      // overlaps the end of the load instead of adding to it.
      await at(0.15)
      await cut()
      await at(0.35)
      await killWorker()
      await at(0.55)
      await restart(1, 'crash', killService)
    }

    const load: LoadResult = await loadPromise
    say(`load done: ${load.outcomes.size} requests; draining`)

    // Drain: every 2xx handled, every poison message in the dead-letter destination.
    const handled: HandledRecord[] = []
    const deadRecords: DeadRecord[] = []
    const handledTail = new Tail(handledFile)
    const deadTail = new Tail(deadFile)
    const readFiles = (): void => {
      for (const line of handledTail.lines()) { const r = parseHandled(line); if (r !== undefined) handled.push(r) }
      for (const line of deadTail.lines()) { try { deadRecords.push(JSON.parse(line) as DeadRecord) } catch {} }
    }
    const okIds = [...load.outcomes].filter(([, o]) => typeof o === 'number' && o >= 200 && o < 300).map(([id]) => id)
    const seen = new Set<string>()
    const deadline = Math.max(Date.now(), ...faults.map(f => f.endedAt)) + p.drainTimeoutMs
    for (;;) {
      readFiles()
      for (const r of handled) seen.add(r.requestId)
      const missing = okIds.filter(id => !seen.has(id)).length
      if (missing === 0 || Date.now() > deadline) break
      await sleep(200)
    }
    let deadLetters: RawDeadLetter[] = []
    let secondLevel: RawDeadLetter[] = []
    for (;;) {
      try {
        deadLetters = await broker.readDeadLetters(dlqTopic)
      } catch (err) {
        say(`could not read the dead letters yet: ${(err as Error).message}`)
      }
      const found = poison.filter(m => deadLetters.some(d => d.poison === m.name)).length
      if (found === poison.length || Date.now() > deadline) break
      await sleep(2_000)
    }
    // The dead-letter handler's view: what it read, and what it could not decode (dead-lettered again).
    const secondDeadline = Math.min(deadline, Date.now() + 10_000)
    for (;;) {
      readFiles()
      try {
        secondLevel = await broker.readDeadLetters(`${dlqTopic}.${deadLetterGroup}.dlq`)
      } catch {}
      if (deadRecords.length + secondLevel.length >= deadLetters.length || Date.now() > secondDeadline) break
      await sleep(1_000)
    }
    const drainEndedAt = Date.now()
    const outboxAtEnd = await outboxStats()
    sampling = false
    await sampler
    say('drained; stopping the worker and the service')

    expectingExit = true
    const stops = await Promise.all([worker, service].map(async c => c === undefined ? 'none' : await stopChild(c, 'SIGTERM', 15_000)))
    readFiles()
    say(`worker ${stops[0] ?? '?'}, service ${stops[1] ?? '?'}`)

    const input = {
      broker: p.broker,
      brokerDescription: broker.describe(),
      mode: p.mode,
      rate: p.rate,
      durationMs: p.durationMs,
      concurrency: p.concurrency,
      outbox: outbox === undefined
        ? `off: the library has no outbox yet, so a request whose event the broker did not acknowledge within publishTimeout (${p.publishTimeout / 1000} s) got a 503`
        : `on (maxBytes ${outbox.maxBytes / 2 ** 20} MiB, publishTimeout ${p.publishTimeout / 1000} s): at most ${outboxPeak} events held at once; at the end ${outboxAtEnd === undefined ? 'unknown (the service did not answer)' : `${outboxAtEnd.pending} pending, ${outboxAtEnd.undeliverable} undeliverable`}`,
      load,
      handled,
      deadLetters,
      deadRecords,
      secondLevelDeadLetters: secondLevel,
      poison,
      faults,
      killedWorkers,
      unexpectedExits,
      drainTimeoutMs: p.drainTimeoutMs,
      drainEndedAt,
      serviceLog: path.join(dir, 'service.log'),
      workerLog: path.join(dir, 'worker.log')
    }
    const figures = computeFigures(input)
    process.stdout.write(formatReport(input, figures) + '\n')
    const bad = figures.lost.length > 0 || figures.poisonAccounted < poison.length || failed
    if (bad) {
      process.stderr.write(`\nfaults[${p.broker}]: FAILED (${figures.lost.length} lost, ${figures.poisonAccounted}/${poison.length} poison accounted${failed ? ', a fault could not be produced' : ''})\n`)
      process.stderr.write(`--- worker log (last lines)\n${tail(path.join(dir, 'worker.log'), 40)}\n--- service log (last lines)\n${tail(path.join(dir, 'service.log'), 40)}\n`)
    }
    return bad ? 1 : 0
  } catch (err) {
    process.stderr.write(`faults[${p.broker}]: the harness could not run: ${(err as Error).stack ?? String(err)}\n`)
    process.stderr.write(`--- worker log (last lines)\n${tail(path.join(dir, 'worker.log'), 40)}\n--- service log (last lines)\n${tail(path.join(dir, 'service.log'), 40)}\n`)
    return 2
  } finally {
    sampling = false
    expectingExit = true
    await Promise.all([worker, service].map(async c => { if (c !== undefined) await stopChild(c, 'SIGKILL', 5_000) }))
    await broker.stop().catch(err => say(`could not stop the broker cleanly: ${(err as Error).message}`))
    if (p.keep) say(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
    forgetDir()
    say('done')
  }
}

process.exitCode = await main()
// Nothing the harness started is left: end now even if a client library keeps a timer.
process.exit()
