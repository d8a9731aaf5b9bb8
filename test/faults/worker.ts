// A consumer process for the fault tests: `node --import tsx test/faults/worker.ts`, set up
// by the JSON in HERALD_FAULT_WORKER (see WorkerConfig). It runs one handler through
// startConsumers() with the default signals, so SIGTERM is handled by Herald itself, and
// prints one JSON line per step on stdout (written synchronously to the pipe, so a line
// printed before a SIGKILL is never lost):
//   {"ev":"ready"}                      every handler is subscribed
//   {"ev":"start","id","n","attempt"}   a handler attempt begins (a `crashOn` message then exits the process)
//   {"ev":"done", …} / {"ev":"fail", …} / {"ev":"aborted", …}   … and how it ended
//   {"ev":"log","level","msg","fields"} Herald's log records at info and above
// Every line carries `pid` and `t` (Date.now(): the system clock, comparable across processes).
import { createMessaging, messageHandler, startConsumers, type Context, type Logger, type MessagingOptions } from '../../lib/index.js'

export interface WorkerConfig {
  /** Messaging options without the logger (the worker prints the records). */
  messaging: MessagingOptions
  topic: string
  group: string
  /** How long each attempt takes, in ms. */
  delayMs: number
  concurrency: number
  shutdownTimeout: number
  /** Values of `n` whose first attempt throws at once (before the delay). */
  failFirst?: number[]
  retryDelay?: number
  maxRetries?: number
  /** Values of `n` whose every attempt ends the process at once (`process.exit(1)`): a poison message. */
  crashOn?: number[]
  /** Values of `n` whose every attempt throws at once. */
  failAlways?: number[]
  /** The handler's `durableRetryAfter` (default: Herald's). */
  durableRetryAfter?: number | false
  /** Values of `n` whose first attempt sends the worker SIGTERM (then goes on as configured). */
  signalOn?: number[]
  /**
   * This many more handlers, each alone in a group on a topic of its own
   * (`<topic>-extra-<i>`, group `<group>-extra-<i>`), started after the main one, so that
   * startConsumers() is still starting while the main handler already runs messages.
   */
  extraGroups?: number
}

export interface WorkerLine {
  ev: 'ready' | 'start' | 'done' | 'fail' | 'aborted' | 'log' | 'fatal'
  pid: number
  t: number
  id?: string
  n?: number
  attempt?: number
  messageId?: string
  level?: string
  msg?: string
  fields?: Record<string, unknown>
}

const config = JSON.parse(process.env.HERALD_FAULT_WORKER ?? 'null') as WorkerConfig | null
if (config === null) throw new Error('set HERALD_FAULT_WORKER to the worker configuration (JSON)')

function print (line: Omit<WorkerLine, 'pid' | 't'>): void {
  process.stdout.write(`${JSON.stringify({ ...line, pid: process.pid, t: Date.now() })}\n`)
}

function jsonSafe (fields: unknown): Record<string, unknown> {
  if (fields === null || typeof fields !== 'object') return {}
  try {
    return JSON.parse(JSON.stringify(fields, (_k, v: unknown) => v instanceof Error ? v.message : typeof v === 'bigint' ? String(v) : v)) as Record<string, unknown>
  } catch {
    return {}
  }
}

function printingLogger (bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (obj: unknown, msg?: string): void => {
    if (level === 'debug') return
    print({ ev: 'log', level, msg: typeof obj === 'string' ? obj : msg ?? '', fields: { ...bindings, ...jsonSafe(obj) } })
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: b => printingLogger({ ...bindings, ...b }) }
}

async function pause (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (signal.aborted) { reject(signal.reason as Error); return }
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason as Error) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

const failFirst = new Set(config.failFirst ?? [])
const crashOn = new Set(config.crashOn ?? [])
const failAlways = new Set(config.failAlways ?? [])
const signalOn = new Set(config.signalOn ?? [])
const messaging = createMessaging({ ...config.messaging, logger: printingLogger() })
const handler = messageHandler({
  topic: config.topic,
  group: config.group,
  concurrency: config.concurrency,
  maxRetries: config.maxRetries ?? 3,
  retryDelay: config.retryDelay ?? 200,
  backoff: 'fixed',
  ...(config.durableRetryAfter === undefined ? {} : { durableRetryAfter: config.durableRetryAfter })
}, async function faultJob (data: unknown, ctx: Context) {
  const n = (data as { n?: unknown } | null)?.n
  const step = { id: ctx.event?.id, n: typeof n === 'number' ? n : undefined, attempt: ctx.attempt, messageId: ctx.messageId }
  print({ ev: 'start', ...step })
  if (typeof n === 'number' && crashOn.has(n)) process.exit(1)
  if (typeof n === 'number' && signalOn.has(n) && ctx.attempt === 1) process.kill(process.pid, 'SIGTERM')
  if (typeof n === 'number' && ((failFirst.has(n) && ctx.attempt === 1) || failAlways.has(n))) {
    print({ ev: 'fail', ...step })
    throw new Error(`planned failure of message ${n}`)
  }
  try {
    await pause(config.delayMs, ctx.signal)
  } catch (err) {
    print({ ev: 'aborted', ...step })
    throw err
  }
  print({ ev: 'done', ...step })
})

const extras = Array.from({ length: config.extraGroups ?? 0 }, (_v, i) =>
  messageHandler({ topic: `${config.topic}-extra-${i}`, group: `${config.group}-extra-${i}` }, async function extraJob () {}))

startConsumers({ messaging, handlers: [handler, ...extras], shutdownTimeout: config.shutdownTimeout }).then(
  () => print({ ev: 'ready' }),
  (err: unknown) => {
    print({ ev: 'fatal', msg: err instanceof Error ? err.message : String(err) })
    process.exit(1)
  }
)
