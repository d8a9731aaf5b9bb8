import { HandlerError } from '../errors.js'
import { definitionOf, takeStrayOnEventMethods } from '../handlers/decorators.js'
import type { HandlerDefinition } from '../handlers/handler.js'
import { checkKnownOptions, DEFAULT_MAX_MESSAGE_BYTES, resolveGroup, resolveTopics, wholeNumber } from '../handlers/options.js'
import { registeredHandlers } from '../handlers/registry.js'
import { childLogger } from '../logger.js'
import { getMessaging, type Messaging } from '../messaging.js'
import { HandlerConsumer, type ContextFactory } from './handler-consumer.js'
import { GroupConsumer } from './group-consumer.js'
import { checkSchemaFormats } from '../handlers/formats.js'
import { loadHandlerModules } from './loader.js'
import { consumedGroups, type ConsumedGroup } from '../observability/registry.js'
import { startHealthServer, type HealthServer } from './health-server.js'
import { Readiness, trackRunner, type RunnerState } from './readiness.js'

/**
 * Topic + group pairs consumed by the runners of each Messaging instance that are still
 * running, with the handler that holds each: two runners of one instance consuming the
 * same pair would silently split its messages. Another instance is another client, a
 * deliberate second member of the group, and is not checked.
 */
const claims = new WeakMap<Messaging, Map<string, string>>()

export interface StartConsumersOptions {
  /** A directory of handler modules, loaded recursively. */
  dir?: string
  /** Handlers given directly: `messageHandler()` values or `@consumer` classes. */
  handlers?: unknown[]
  /** Consume only these topics (a handler's other topics are left alone). */
  topics?: string[]
  /** The group of handlers that do not name one. Default: the messaging's `source`. */
  group?: string
  /** The instance to consume through. Default: the process default (`configureMessaging`). */
  messaging?: Messaging
  /** Called for each message; what it returns is merged into the handler's `ctx` (e.g. `{ db }`). */
  context?: ContextFactory
  /** How long `stop()` lets running handlers finish, in ms, before aborting them. Default 30000. */
  shutdownTimeout?: number
  /** Signals that stop the runner gracefully. Default `['SIGTERM', 'SIGINT']`; `false` for none. */
  signals?: NodeJS.Signals[] | false
  /**
   * The largest message body a handler accepts, in bytes, for handlers that set none; a
   * bigger one is dead-lettered, unchanged and unparsed, with a reason giving its size.
   * Default 1 MiB (1048576). Independent of the producer's and the broker's own limits.
   */
  maxMessageBytes?: number
  /**
   * Serve `/livez`, `/readyz` and `/metrics` (with prom-client installed) on this port (0:
   * any free port), from the start until the runner stopped: `/readyz` is 503 while it
   * starts and from the first moment of a shutdown while it drains.
   */
  httpPort?: number
}

const START_OPTIONS = ['dir', 'handlers', 'topics', 'group', 'messaging', 'context', 'shutdownTimeout', 'signals', 'maxMessageBytes', 'httpPort'] as const

/** The consumers started by `startConsumers`. */
export interface Runner {
  /** What runs: one entry per handler, with its group and topics. */
  readonly consumers: ReadonlyArray<{ name: string, group: string, topics: readonly string[] }>
  /** `ready` once every group receives; `draining` from the first moment of `stop()` (or a signal); then `stopped`. */
  readonly state: RunnerState
  /** The port of the `httpPort` server, when there is one. */
  readonly httpPort: number | undefined
  /**
   * Stops gracefully: no new messages, running handlers finish (up to `shutdownTimeout`)
   * and are acknowledged, waiting retries are left for redelivery, then the consumers
   * leave their groups. Idempotent.
   */
  stop(): Promise<void>
}

/**
 * Loads the handlers (the directory, the `handlers` given, and those registered with
 * `autoStart`), subscribes each in its group, and resolves once all are ready to receive
 * (or, stopped by a signal or `stop()` while still subscribing, once that start was cut
 * short: `state` is then `draining` or `stopped`).
 *
 * @example
 * configureMessaging({ broker: 'kafka' })
 * const runner = await startConsumers({ dir: './handlers', context: () => ({ db }) })
 */
export async function startConsumers (options: StartConsumersOptions = {}): Promise<Runner> {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new HandlerError('startConsumers(options): options must be an object, e.g. startConsumers({ dir: "./handlers" })')
  }
  const where = 'startConsumers'
  checkKnownOptions(where, options, START_OPTIONS)
  const shutdownTimeout = wholeNumber(where, 'shutdownTimeout', options.shutdownTimeout ?? 30_000)
  const maxMessageBytes = wholeNumber(where, 'maxMessageBytes', options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES)
  if (options.httpPort !== undefined && (!Number.isInteger(options.httpPort) || options.httpPort < 0 || options.httpPort > 65535)) {
    throw new HandlerError(`startConsumers: httpPort must be a port number from 0 (any free port) to 65535, got ${JSON.stringify(options.httpPort)}`)
  }
  if (options.context !== undefined && typeof options.context !== 'function') {
    throw new HandlerError('startConsumers: context must be a function returning the fields to add to ctx, e.g. () => ({ db })')
  }
  if (options.dir !== undefined && (typeof options.dir !== 'string' || options.dir === '')) {
    throw new HandlerError(`startConsumers: dir must be the path of a folder of handler modules, e.g. dir: "./handlers", got ${JSON.stringify(options.dir)}`)
  }
  if (options.handlers !== undefined && !Array.isArray(options.handlers)) {
    throw new HandlerError('startConsumers: handlers must be an array of messageHandler(...) values or @consumer classes, e.g. handlers: [sendWelcomeEmail]')
  }
  const topicFilter = options.topics === undefined ? undefined : resolveTopics(where, options.topics, 'topics')
  resolveGroup(where, options.group)
  const signalList = options.signals ?? ['SIGTERM', 'SIGINT']
  if (signalList !== false && (!Array.isArray(signalList) || signalList.some(s => typeof s !== 'string' || !s.startsWith('SIG')))) {
    throw new HandlerError(`startConsumers: signals must be an array of signal names such as ["SIGTERM", "SIGINT"], or false for none, got ${JSON.stringify(options.signals)}`)
  }
  // Closed at a signal only when it is the process default: an instance given here belongs to the caller.
  const ownsMessaging = options.messaging === undefined
  const messaging = options.messaging ?? getMessaging()

  const stray = takeStrayOnEventMethods()
  if (stray.length > 0) {
    throw new HandlerError(`startConsumers: ${stray.map(m => `@onEvent method ${m}`).join(', ')} ${stray.length === 1 ? 'is' : 'are'} on a class without @consumer, so nothing would call ${stray.length === 1 ? 'it' : 'them'}; add @consumer(group, { topics }) to the class, or remove @onEvent`)
  }
  // Each handler with where it came from, so that an error can tell two of them apart.
  const definitions = new Map<HandlerDefinition, string>()
  if (options.dir !== undefined) for (const h of await loadHandlerModules(options.dir)) definitions.set(h.definition, `"${h.definition.name}" (${h.origin})`)
  for (const [i, value] of (options.handlers ?? []).entries()) {
    const definition = definitionOf(value)
    if (definition === undefined) throw new HandlerError(`startConsumers: handlers[${i}] is not a handler; pass messageHandler(...) values or @consumer classes`)
    if (!definitions.has(definition)) definitions.set(definition, `"${definition.name}" (handlers[${i}])`)
  }
  for (const d of registeredHandlers()) if (!definitions.has(d)) definitions.set(d, `"${d.name}" (autoStart)`)
  if (definitions.size === 0) {
    throw new HandlerError('startConsumers: no handler to start; pass dir (a folder of handler modules) or handlers')
  }

  const only = topicFilter === undefined ? undefined : new Set(topicFilter)
  const logger = childLogger(messaging.logger, { component: 'herald.consumer' })
  const consumers: HandlerConsumer[] = []
  const running = claims.get(messaging) ?? new Map<string, string>()
  const claimed = new Map<string, string>()
  for (const [definition, label] of definitions) {
    const group = definition.group ?? options.group ?? messaging.options.source
    const topics = definition.topics.filter(t => only === undefined || only.has(t))
    if (topics.length === 0) continue
    for (const topic of topics) {
      const pair = `${group}\u0000${topic}`
      const other = claimed.get(pair)
      if (other !== undefined) {
        throw new HandlerError(`handlers ${other} and ${label} both consume topic "${topic}" in group "${group}"; give one of them another group, or handle both in one handler`)
      }
      const elsewhere = running.get(pair)
      if (elsewhere !== undefined) {
        throw new HandlerError(`handler ${label} would consume topic "${topic}" in group "${group}", which handler ${elsewhere} of another running startConsumers() on this messaging instance already consumes (the two would split its messages); stop that runner first, give one of them another group, or start both from one startConsumers() call`)
      }
      claimed.set(pair, label)
    }
    for (const target of definition.targets) {
      if (target.schema !== undefined) checkSchemaFormats(`handler ${label}${target.name === definition.name ? '' : `, method ${target.name}`}`, target.schema)
    }
    consumers.push(new HandlerConsumer(definition, {
      messaging, group, topics, logger, context: options.context, maxMessageBytes: definition.maxMessageBytes ?? maxMessageBytes
    }))
  }
  if (only !== undefined) {
    const consumed = new Set(consumers.flatMap(c => c.settings.topics))
    const missing = [...only].filter(t => !consumed.has(t))
    if (missing.length > 0) throw new HandlerError(`no handler consumes topic ${missing.map(t => `"${t}"`).join(', ')}; check the topics option (--topic)`)
  }

  const byGroup = new Map<string, HandlerConsumer[]>()
  for (const c of consumers) byGroup.set(c.settings.group, [...(byGroup.get(c.settings.group) ?? []), c])
  const groups = [...byGroup].map(([group, handlers]) => new GroupConsumer(group, handlers, shutdownTimeout, logger))

  // Claimed before the first await, so that two startConsumers() racing each other see each other.
  for (const [pair, label] of claimed) running.set(pair, label)
  claims.set(messaging, running)
  const release = (): void => { for (const [pair, label] of claimed) if (running.get(pair) === label) running.delete(pair) }
  const readiness = new Readiness()
  // An app serving /readyz on this messaging is not ready while the runner starts or drains.
  const untrackRunner = trackRunner(messaging, readiness)
  let health: HealthServer | undefined
  let broker
  try {
    if (options.httpPort !== undefined) health = await startHealthServer(options.httpPort, readiness, logger)
    broker = await messaging.broker()
  } catch (err) {
    await health?.close()
    untrackRunner()
    release()
    throw err
  }
  // Signals are heard from the first subscription on: a SIGTERM while later groups are
  // still starting stops the runner like one after (the groups not yet started never
  // start), rather than kill the process with messages in its hands.
  const started: GroupConsumer[] = []
  let stopping: Promise<void> | undefined
  let starting: Promise<void> = Promise.resolve()
  const signals = signalList === false ? [] : signalList
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'stopping consumers')
    void runner.stop().then(async () => { if (ownsMessaging) await messaging.close() }).then(() => {
      // Nobody else listens for this signal: do what it would have done without us.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    })
  }
  const observed: ConsumedGroup[] = groups.map(g => ({ messaging, group: g.group, topics: g.topics }))
  const untrack = messaging.track({ stop: () => runner.stop() })
  const runner: Runner = {
    consumers: consumers.map(c => ({ name: c.definition.name, group: c.settings.group, topics: c.settings.topics })),
    get state () { return readiness.state },
    httpPort: health?.port,
    stop: () => {
      stopping ??= (async () => {
        readiness.state = 'draining'
        for (const s of signals) process.removeListener(s, onSignal)
        // A group still subscribing is stopped once it can be; the loop starts no other.
        await starting.catch(() => {})
        await Promise.allSettled(started.map(g => g.stop()))
        for (const o of observed) consumedGroups.delete(o)
        readiness.state = 'stopped'
        untrackRunner()
        release()
        untrack()
        await health?.close()
      })()
      return stopping
    }
  }
  for (const s of signals) process.once(s, onSignal)
  starting = (async () => {
    for (const g of groups) {
      if (stopping !== undefined) return
      await g.start(broker)
      started.push(g)
    }
  })()
  try {
    await starting
  } catch (err) {
    await runner.stop()
    throw err
  }
  if (stopping !== undefined) {
    logger.info({ started: started.length, of: groups.length }, 'stopped while starting: the groups not yet started were not started')
    return runner
  }
  readiness.state = 'ready'
  for (const o of observed) consumedGroups.add(o)
  logger.info({ consumers: runner.consumers }, 'consumers started')
  return runner
}
