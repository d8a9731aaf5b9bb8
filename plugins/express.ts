import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { bodyOfValue, publishRouteEvents, resolveEventConfigs, type EventConfig, type ReplyBody, type RouteEventsFailure } from '../lib/emit.js'
import { ConfigError, HeraldError } from '../lib/errors.js'
import type { Messaging } from '../lib/messaging.js'
import { redactText } from '../lib/redact.js'
import { healthPaths, livenessAnswer, readinessAnswer, type HealthOption, type HealthPaths } from './health.js'
import { answerForFailure, bodyText, isSuccess, messagingFrom, resultOfText, type IntegrationOptions } from './shared.js'

export type { EventConfig } from '../lib/emit.js'
export type { Messaging, MessagingOptions } from '../lib/messaging.js'
export type { HealthOption } from './health.js'

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The Messaging instance set by `app.use(herald(…))`. */
      messaging: Messaging
    }
  }
}

/** The event config `emit()` takes: the same as a Fastify route's `config.event`. */
export type RouteEventConfig = EventConfig<any, Request>

/** Options of `herald()`: the messaging options, or `messaging` to use an instance you own (closed by `close()` only with `closeMessaging`). */
export type HeraldExpressOptions = IntegrationOptions

/** The middleware `herald()` returns, with the instance it uses and its lifecycle. */
export interface HeraldMiddleware {
  (req: Request, res: Response, next: NextFunction): void
  /** The Messaging instance the middleware puts on `req.messaging` and `app.locals.messaging`. */
  readonly messaging: Messaging
  /** Connects now, so that an unreachable broker fails start-up instead of the first request. */
  connect(): Promise<void>
  /** Closes the messaging when `herald()` created it (or `closeMessaging` is true); otherwise does nothing. */
  close(): Promise<void>
}

/**
 * The Express middleware: puts a Messaging instance on `req.messaging` and
 * `app.locals.messaging`. `app.use(herald(…))` sets `app.locals.messaging` at once (on a
 * Router, or as a route middleware, on the first request that passes through it). The
 * instance is created now, so bad options throw here, at start-up; call
 * `await middleware.connect()` to also fail start-up on an unreachable broker, and
 * `await middleware.close()` on shutdown.
 *
 * @example
 * import { herald, emit } from 'herald/express'
 * const messaging = herald({ broker: 'redis' })
 * app.use(messaging)
 * await messaging.connect()
 */
export function herald (options: HeraldExpressOptions = {}): HeraldMiddleware {
  const { messaging, owned, health } = messagingFrom(options)
  const probes = health === undefined ? undefined : probeHandler(messaging, health)
  const middleware = function heraldMessaging (req: Request, res: Response, next: NextFunction): void {
    req.messaging = messaging
    if (req.app.locals.messaging !== messaging) req.app.locals.messaging = messaging
    if (probes !== undefined) probes(req, res, next)
    else next()
  }
  return Object.assign(middleware, {
    messaging,
    connect: async (): Promise<void> => { await messaging.connect() },
    close: async (): Promise<void> => { if (owned) await messaging.close() },
    // Express calls nothing of a middleware at app.use() time, except for a sub-app (what
    // has handle() and set()): it mounts it and emits 'mount' with the parent app. Being
    // mounted that way is the one moment herald sees the app before its first request.
    handle: middleware,
    set: () => middleware,
    emit: (event: unknown, parent?: { locals?: Record<string, unknown> }): boolean => {
      if (event === 'mount' && parent?.locals !== undefined) parent.locals.messaging = messaging
      return true
    }
  })
}

function probeHandler (messaging: Messaging, paths: HealthPaths): RequestHandler {
  return function heraldHealth (req: Request, res: Response, next: NextFunction): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next()
    const answer = (status: number, body: unknown): void => { res.status(status).set('cache-control', 'no-store').json(body) }
    if (paths.livez !== false && req.path === paths.livez) {
      const a = livenessAnswer()
      return answer(a.status, a.body)
    }
    if (paths.readyz !== false && req.path === paths.readyz) {
      readinessAnswer(messaging).then(a => answer(a.status, a.body), next)
      return
    }
    next()
  }
}

/**
 * A middleware serving `/livez` (200 while the process answers) and `/readyz` (503 with the
 * reasons while the broker does not answer and no outbox with room takes the sends, or a
 * runner started on this messaging is starting or draining). `herald({ health: true })`
 * does the same; this one is for a messaging you pass around.
 *
 * @example
 * app.use(healthRoutes(messaging))            // /livez and /readyz
 * app.use(healthRoutes(messaging, { readyz: '/ready' }))
 */
export function healthRoutes (source: Messaging | HeraldMiddleware, paths: Exclude<HealthOption, boolean> = {}): RequestHandler {
  const messaging = typeof source === 'function' ? source.messaging : source
  if (messaging === null || typeof messaging !== 'object' || typeof messaging.health !== 'function') {
    throw new ConfigError('messaging', 'healthRoutes() takes a Messaging instance or the middleware herald() returns')
  }
  return probeHandler(messaging, healthPaths(paths, 'healthRoutes') ?? { livez: false, readyz: false })
}

/** A body given to `res.end()` as the event's result: JSON parsed, text as is, nothing as `null`. */
function resultOfChunk (chunk: unknown, contentType: unknown): unknown {
  const text = bodyText(chunk, contentType)
  return text === undefined || text === '' ? null : resultOfText(text, contentType)
}

/**
 * A route middleware that publishes `config`'s events from the response: when the handler
 * replies with a 2xx, the body given to `res.json()` (or `res.send()`, `res.end()`, or
 * written with `res.write()`) is published and the response waits for the broker's
 * acknowledgement. If it does not come, the client gets a 503 naming the event instead;
 * an event that cannot be built (its `data()` throws, its data is not JSON, it is over
 * `maxMessageBytes`, the `keyField` is missing) is passed to `next(err)` as a 500. The
 * config is checked now: a mistake throws a `ConfigError` at start-up. Requires
 * `app.use(herald(…))` before the route.
 *
 * Non-2xx responses and HEAD requests publish nothing. A body written with `res.write()`
 * is held until `res.end()` and published whole, then sent. Sending a second response
 * (`res.json()` twice) throws `ERR_HTTP_HEADERS_SENT`, as Express does without Herald.
 *
 * @example
 * app.post('/users', emit({ name: 'user.created', topic: 'user-events', keyField: 'id' }),
 *   async (req, res) => { res.status(201).json(await createUser(req.body)) })
 */
export function emit (config: RouteEventConfig | RouteEventConfig[]): RequestHandler {
  const configs = resolveEventConfigs(config, 'emit()')
  return function heraldEmit (req: Request, res: Response, next: NextFunction): void {
    const messaging = req.messaging as Messaging | undefined
    if (messaging === undefined) {
      next(new HeraldError(`emit(): req.messaging is not set on ${req.method} ${req.originalUrl}; add app.use(herald({ … })) before the routes that use emit()`, { code: 'HERALD_NOT_REGISTERED' }))
      return
    }
    // HEAD runs the GET route for its headers only: it is not the action that emits.
    if (req.method !== 'HEAD') holdResponseForEvents(req, res, next, messaging, configs)
    next()
  }
}

const ESCAPED: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026' }

/** The text `res.json(value)` sends: Express's own rules, with the app's json settings; undefined when JSON has no text for it. */
function serializeLikeExpress (res: Response, value: unknown): string | undefined {
  const app = res.app
  const replacer = app.get('json replacer') as ((key: string, value: unknown) => unknown) | undefined
  const spaces = app.get('json spaces') as string | number | undefined
  let text: string | undefined = replacer !== undefined || spaces !== undefined ? JSON.stringify(value, replacer, spaces) : JSON.stringify(value)
  if (Boolean(app.get('json escape')) && typeof text === 'string') text = text.replace(/[<>&]/g, c => ESCAPED[c]!)
  return text
}

/** The error Node throws when a response is sent twice; a held response counts as sent. */
function headersSentError (): Error {
  return Object.assign(new Error('Cannot set headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
}

type Callback = (err?: Error | null) => void

/**
 * Gates every way a 2xx can leave one response (`res.json`, `res.send`, `res.write`,
 * `res.end`, and what calls them: `sendStatus`, `res.send(text)`…) so that it is sent
 * only once its events are acknowledged. From the first body on, the response counts as
 * sent (`res.headersSent` is true), as it would be without Herald.
 */
function holdResponseForEvents (req: Request, res: Response, next: NextFunction, messaging: Messaging, configs: EventConfig[]): void {
  const json = res.json
  const send = res.send
  const write = res.write as (...args: unknown[]) => boolean
  const end = res.end as (...args: unknown[]) => Response
  const route = `${req.method} ${req.baseUrl}${typeof req.route?.path === 'string' ? req.route.path : req.path}`
  // open: nothing sent yet; streaming: res.write() bodies held; held: publishing;
  // passing: herald itself sends (or the response was let through unpublished).
  let state: 'open' | 'streaming' | 'held' | 'passing' = 'open'
  const chunks: Buffer[] = []
  const headersSent = (): boolean => Reflect.get(Object.getPrototypeOf(res) as object, 'headersSent', res) as boolean

  Object.defineProperty(res, 'headersSent', {
    configurable: true,
    get: () => state === 'streaming' || state === 'held' || headersSent()
  })

  const gated = (): boolean => state === 'open' ? isSuccess(res.statusCode) : state !== 'passing'

  const release = (status: number, sendIt: () => void): void => {
    state = 'passing'
    // The status the handler replied with, whatever was tried on the response meanwhile.
    res.status(status)
    sendIt()
  }

  const fail = (failure: RouteEventsFailure): void => {
    const answer = answerForFailure(failure, route)
    messaging.logger.error(answer.fields, answer.message)
    state = 'passing'
    if (headersSent()) {
      // The handler flushed its status itself (res.writeHead, res.flushHeaders): the
      // only way left to say it failed is to abort the response.
      res.destroy()
      return
    }
    // What send() set for the original body does not fit this one.
    for (const header of ['Content-Length', 'Content-Type', 'Content-Encoding', 'ETag']) res.removeHeader(header)
    if (answer.status === 500) {
      res.status(500)
      next(answer.error)
      return
    }
    res.status(503)
    json.call(res, answer.body)
  }

  const hold = (result: ReplyBody, sendIt: () => void): void => {
    state = 'held'
    const status = res.statusCode
    publishRouteEvents(messaging, configs, result, req).then(failure => {
      if (failure === undefined) release(status, sendIt)
      else fail(failure)
    }).catch((err: unknown) => {
      // Sending the response itself failed (the client went away): nothing to reply to.
      messaging.logger.error({ route, reason: redactText(err instanceof Error ? err.message : String(err)) }, 'herald: could not send the response')
      if (!res.writableEnded) res.destroy()
    })
  }

  res.json = function heraldJson (body: unknown): Response {
    if (!gated()) return json.call(res, body)
    if (state !== 'open') throw headersSentError()
    // Serialized once, as res.json() would (the app's json replacer, spaces and escape
    // settings): that text is what the client gets and what the event carries as its data.
    let text: string | undefined
    try {
      text = serializeLikeExpress(res, body)
    } catch {
      // JSON cannot carry it (a BigInt, a cycle): building the event says so, as a 500.
    }
    if (text === undefined) {
      hold(bodyOfValue(body), () => { json.call(res, body) })
      return res
    }
    hold({ value: () => body, json: text }, () => {
      if (res.get('Content-Type') === undefined) res.set('Content-Type', 'application/json')
      send.call(res, text)
    })
    return res
  }

  res.send = function heraldSend (body?: unknown): Response {
    if (!gated()) return send.call(res, body)
    if (state !== 'open') throw headersSentError()
    // An object goes through res.json; a string, a Buffer, nothing, through res.end.
    return send.call(res, body)
  }

  res.write = function heraldWrite (...args: unknown[]): boolean {
    if (!gated()) return write.apply(res, args)
    if (state === 'held') throw headersSentError()
    state = 'streaming'
    const [chunk, encoding, callback] = args
    if (chunk !== undefined && chunk !== null) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8'))
    const done = (typeof encoding === 'function' ? encoding : callback) as Callback | undefined
    if (done !== undefined) process.nextTick(done)
    return true
  } as Response['write']

  res.end = function heraldEnd (...args: unknown[]): Response {
    if (!gated()) return end.apply(res, args)
    if (state === 'held') throw headersSentError()
    const [chunk, encoding] = args
    const last = typeof chunk === 'function' || chunk === undefined || chunk === null
      ? undefined
      : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8')
    const callback = args.find(a => typeof a === 'function') as Callback | undefined
    // The whole body: what res.write() held, then the last chunk.
    const body = state === 'streaming' ? Buffer.concat(last === undefined ? chunks : [...chunks, last]) : last
    const contentType = res.getHeader('content-type')
    hold({ value: () => resultOfChunk(body, contentType), json: undefined }, () => {
      if (body === undefined) end.call(res, callback)
      else end.call(res, body, callback)
    })
    return res
  } as Response['end']
}
