#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { inspect, parseArgs } from 'node:util'
import { configureMessaging, HeraldError, startConsumers } from '../lib/index.js'
import type { BrokerKind, Messaging, Runner } from '../lib/index.js'
import { describeParseError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './cli-usage.js'
import { DLQ_USAGE, dlq } from './dlq-command.js'

const USAGE = `Usage: herald <command> [options]

Commands:
  consumer    Load the handler modules in a folder and consume their topics
              until SIGTERM or SIGINT, then stop gracefully.
  dlq         See, replay or purge a group's dead letters (see below).

Options of "herald consumer":
  --handlers DIR          The folder of handler modules, searched recursively
                          (.js .mjs .cjs; .ts .mts under a TypeScript loader).
                          Default ./handlers
  --topic T               Consume only topic T; repeat for several topics.
                          Default: every topic of every handler.
  --group G               The consumer group of handlers that do not name one.
                          Default: SERVICE_NAME, else "herald".
  --broker B              kafka, rabbitmq, redis or memory. Overrides MESSAGING_BROKER.
  --shutdown-timeout MS   How long running handlers may finish on stop, in ms.
                          Default 30000.
  --http-port N           Serve /livez, /readyz and /metrics (with prom-client
                          installed) on port N while running and draining;
                          /readyz is 503 until ready and from the first signal.

${DLQ_USAGE}
  -h, --help              Print this help.
  -v, --version           Print Herald's version.

Environment:
  MESSAGING_BROKER          kafka, rabbitmq, redis or memory. Default: the broker whose
                            variable below is set, else memory (in-process).
  KAFKA_BOOTSTRAP_SERVERS   Kafka brokers, host:port, comma separated.
  RABBITMQ_URL              amqp:// or amqps:// URL.
  REDIS_URL                 redis:// or rediss:// URL.
  SERVICE_NAME              The service name: event source and default group.
  HERALD_LOG_LEVEL          debug, info, warn (default), error or silent.
  HERALD_DEBUG=1            Print stack traces with errors.

Handler modules written in TypeScript need a loader, e.g.
  NODE_OPTIONS="--import tsx" herald consumer --handlers ./handlers
`

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  handlers: { type: 'string' },
  topic: { type: 'string', multiple: true },
  group: { type: 'string' },
  broker: { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'http-port': { type: 'string' }
} as const

function say (line: string): void {
  process.stdout.write(`herald: ${line}\n`)
}

function version (): string {
  // Relative to the compiled file, dist/bin/herald.js.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  return String(pkg.version)
}

function parseCommandLine (args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UsageError(describeParseError(err))
  }
}

function parseShutdownTimeout (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`--shutdown-timeout must be a whole number of milliseconds, e.g. 30000; got "${value}"`)
  return Number(value)
}

function parseHttpPort (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new UsageError(`--http-port must be a port number from 0 to 65535, e.g. 9464; got "${value}"`)
  return Number(value)
}

/** Prints an error as one line (its stack only with HERALD_DEBUG=1) and returns the exit code. */
function report (err: unknown): number {
  const usage = err instanceof UsageError
  const message = err instanceof Error ? err.message : String(err)
  process.stderr.write(`herald: ${message.replace(/\s*\n\s*/g, ' ')}\n`)
  if (usage) process.stderr.write('run "herald --help" for usage\n')
  if (process.env.HERALD_DEBUG === '1') process.stderr.write(`${inspect(err)}\n`)
  else if (!usage && !(err instanceof HeraldError)) process.stderr.write('set HERALD_DEBUG=1 to see the stack trace\n')
  return usage ? EXIT_USAGE : EXIT_FAILURE
}

interface ConsumerArgs {
  handlers?: string | undefined
  topic?: string[] | undefined
  group?: string | undefined
  broker?: string | undefined
  'shutdown-timeout'?: string | undefined
  'http-port'?: string | undefined
}

/**
 * `herald consumer`: starts the handlers, prints what consumes what, and stays up until a
 * signal. The first SIGTERM/SIGINT drains and closes; a second one exits at once.
 */
async function consumer (values: ConsumerArgs): Promise<void> {
  const shutdownTimeout = parseShutdownTimeout(values['shutdown-timeout'])
  if (values.group === '') throw new UsageError('--group needs a group name')
  if (values.handlers === '') throw new UsageError('--handlers needs a folder')
  if (values.topic?.includes('') === true) throw new UsageError('--topic needs a topic name')

  // A bad broker name is a ConfigError naming "broker" and the allowed values.
  const messaging: Messaging = configureMessaging({ broker: values.broker as BrokerKind | undefined })
  const starting = startConsumers({
    dir: values.handlers ?? './handlers',
    topics: values.topic,
    group: values.group,
    messaging,
    shutdownTimeout,
    httpPort: parseHttpPort(values['http-port']),
    signals: false
  })
  // The embedded broker keeps no socket open: hold the process up until a signal.
  const keepAlive = setInterval(() => {}, 2 ** 30)

  let stopping = false
  let started: Runner | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`herald: ${signal} while stopping; exiting without waiting for running handlers\n`)
      process.exit(EXIT_FAILURE)
    }
    stopping = true
    say('stopping…')
    const stop = started === undefined
      // Still starting (connecting, subscribing): closing the messaging gives up the
      // connection being made, and start-up then ends without waiting for its timeout.
      ? messaging.close().then(async () => { await starting.then(async runner => await runner.stop(), () => {}) })
      : started.stop().then(async () => { await messaging.close() })
    stop.then(() => {
      say('stopped')
      process.exit(EXIT_OK)
    }, (err: unknown) => process.exit(report(err)))
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  let runner: Runner
  try {
    runner = started = await starting
  } catch (err) {
    // A start-up cut short by a signal is no failure: the signal's stop exits.
    if (stopping) return
    clearInterval(keepAlive)
    await messaging.close().catch(() => {})
    throw err
  }
  if (stopping) return
  for (const c of runner.consumers) {
    say(`consuming ${c.topics.join(', ')} in group ${c.group} (handler ${c.name}) on ${messaging.options.broker}`)
  }
  say('ready')
}

/** Runs a command; resolves with the exit code, or undefined while it keeps running. */
async function main (args: string[]): Promise<number | undefined> {
  // dlq has options of its own: it parses its command line itself.
  if (args[0] === 'dlq') return await dlq(args.slice(1))
  const { values, positionals } = parseCommandLine(args)
  if (values.help === true || (positionals.length === 1 && positionals[0] === 'help')) {
    process.stdout.write(USAGE)
    return EXIT_OK
  }
  if (values.version === true) {
    process.stdout.write(`${version()}\n`)
    return EXIT_OK
  }
  const [command, ...rest] = positionals
  if (args.length === 0) {
    // No command is a usage error like any other (exit 2), with the usage to show what to type.
    process.stderr.write(USAGE)
    return EXIT_USAGE
  }
  if (command === undefined) throw new UsageError('give a command, e.g. "herald consumer"')
  if (command !== 'consumer') throw new UsageError(`unknown command "${command}"; the commands are: consumer, dlq`)
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]!}"; give the handlers folder with --handlers DIR`)
  await consumer(values)
  return undefined
}

main(process.argv.slice(2)).then(
  (code) => { if (code !== undefined) process.exit(code) },
  (err: unknown) => process.exit(report(err))
)
