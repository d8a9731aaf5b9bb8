import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { publishForResult, resolveEventConfigs, type EventConfig } from '../lib/emit.js'
import { HeraldError } from '../lib/errors.js'
import type { Messaging } from '../lib/messaging.js'
import { redactText } from '../lib/redact.js'
import { bodyText, describePublishFailure, isSuccess, messagingFrom, resultOfText, unpublishedEventBody, type IntegrationOptions } from './shared.js'

export type { EventConfig } from '../lib/emit.js'
export type { Messaging, MessagingOptions } from '../lib/messaging.js'

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
 * `app.locals.messaging` (set on the app's first request). The instance is created now,
 * so bad options throw here, at start-up; call `await middleware.connect()` to also fail
 * start-up on an unreachable broker, and `await middleware.close()` on shutdown.
 *
 * @example
 * import { herald, emit } from 'herald/express'
 * const messaging = herald({ broker: 'redis' })
 * app.use(messaging)
 * await messaging.connect()
 */
export function herald (options: HeraldExpressOptions = {}): HeraldMiddleware {
  const { messaging, owned } = messagingFrom(options)
  const middleware = function heraldMessaging (req: Request, _res: Response, next: NextFunction): void {
    req.messaging = messaging
    if (req.app.locals.messaging !== messaging) req.app.locals.messaging = messaging
    next()
  }
  return Object.assign(middleware, {
    messaging,
    connect: async (): Promise<void> => { await messaging.connect() },
    close: async (): Promise<void> => { if (owned) await messaging.close() }
  })
}

/** A body given to `res.end()` as the event's result: JSON parsed, text as is, nothing as `null`. */
function resultOfChunk (chunk: unknown, contentType: unknown): unknown {
  const text = bodyText(chunk, contentType)
  return text === undefined || text === '' ? null : resultOfText(text, contentType)
}

/**
 * A route middleware that publishes `config`'s events from the response: when the handler
 * replies with a 2xx, the body given to `res.json()` (or `res.send()`) is published and
 * the response waits for the broker's acknowledgement. If it does not come, the client
 * gets a 503 naming the event instead. The config is checked now: a mistake throws a
 * `ConfigError` at start-up. Requires `app.use(herald(…))` before the route.
 *
 * Non-2xx responses and HEAD requests publish nothing. A response streamed with
 * `res.write()` has sent its 2xx status before the event can be published: it is ended
 * only after the acknowledgement, and destroyed (never completed) when there is none.
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
    if (req.method !== 'HEAD') holdResponseForEvents(req, res, messaging, configs)
    next()
  }
}

/**
 * Wraps `res.json` and `res.end` of one response so that a 2xx is sent only once the
 * events are acknowledged. `res.json` gives the body as the handler passed it; `res.end`
 * catches everything else (`res.send(text)`, `res.sendStatus()`, a bare `res.end()`).
 */
function holdResponseForEvents (req: Request, res: Response, messaging: Messaging, configs: EventConfig[]): void {
  const json = res.json
  const end = res.end as (...args: unknown[]) => Response
  let held = false

  const publishThen = (result: unknown, send: () => void, fail: (err: unknown, eventName: string) => void): void => {
    held = true
    publishForResult(messaging, configs, result, req).then(send, (err: unknown) => {
      const { eventName, fields } = describePublishFailure(err, configs)
      messaging.logger.error({ ...fields, route: `${req.method} ${req.originalUrl}` }, 'herald: the route\'s event was not published; replying 503')
      fail(err, eventName)
    }).catch((err: unknown) => {
      // Sending the response itself failed (the client went away): nothing to reply to.
      messaging.logger.error({ route: `${req.method} ${req.originalUrl}`, reason: redactText(err instanceof Error ? err.message : String(err)) }, 'herald: could not send the response')
      if (!res.writableEnded) res.destroy()
    })
  }

  const reply503 = (_err: unknown, eventName: string): void => {
    if (res.headersSent) {
      res.destroy()
      return
    }
    // What send() set for the original body does not fit this one.
    for (const header of ['Content-Length', 'Content-Type', 'Content-Encoding', 'ETag']) res.removeHeader(header)
    res.status(503)
    json.call(res, unpublishedEventBody(eventName))
  }

  res.json = function heraldJson (body: unknown): Response {
    if (held || !isSuccess(res.statusCode)) return json.call(res, body)
    publishThen(body, () => { json.call(res, body) }, reply503)
    return res
  }

  res.end = function heraldEnd (...args: unknown[]): Response {
    if (held || !isSuccess(res.statusCode)) return end.apply(res, args)
    const chunk = typeof args[0] === 'function' ? undefined : args[0]
    // Streamed: the 2xx status is already out, so a missing acknowledgement can only
    // abort the response.
    const fail = res.headersSent ? () => { res.destroy() } : reply503
    publishThen(resultOfChunk(chunk, res.getHeader('content-type')), () => { end.apply(res, args) }, fail)
    return res
  } as Response['end']
}
