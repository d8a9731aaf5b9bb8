import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { publishRouteEvents, resolveEventConfigs, type EventConfig, type ReplyBody } from '../lib/emit.js'
import { HeraldError } from '../lib/errors.js'
import type { Messaging } from '../lib/messaging.js'
import { livenessAnswer, readinessAnswer } from './health.js'
import { answerForFailure, bodyText, isJsonType, isSuccess, messagingFrom, resultOfText, type IntegrationOptions } from './shared.js'

export type { EventConfig } from '../lib/emit.js'
export type { Messaging, MessagingOptions } from '../lib/messaging.js'
export type { HealthOption } from './health.js'

/** The event config of a Fastify route: `config: { event: { name: 'user.created', … } }`. */
export type RouteEventConfig = EventConfig<any, FastifyRequest>

declare module 'fastify' {
  interface FastifyInstance {
    /** The Messaging instance of the herald plugin: publish, health, close. */
    messaging: Messaging
  }
  interface FastifyContextConfig {
    /**
     * The event (or events) this route emits once its reply is a 2xx: the reply body is
     * published, and the reply waits for the broker's acknowledgement (503 otherwise).
     */
    event?: RouteEventConfig | RouteEventConfig[]
  }
}

/**
 * Options of the herald Fastify plugin: the messaging options (a new instance is created
 * and closed with the app), or `messaging` to use one you own (closed only with `closeMessaging`).
 */
export type HeraldFastifyOptions = IntegrationOptions

/**
 * The reply body as the client gets it: the serialized payload parsed back when it is JSON
 * (so a response schema that drops fields drops them from the event too), the text when it
 * is not, `null` when there is none.
 */
function resultOf (payload: unknown, contentType: unknown, beforeSerialization: { value: unknown } | undefined): unknown {
  if (payload === undefined || payload === null || payload === '') return null
  const text = bodyText(payload, contentType)
  // A stream (or binary) payload cannot be read without consuming it: use the value the
  // handler returned, when Fastify serialized one.
  if (text === undefined) return beforeSerialization !== undefined ? beforeSerialization.value : null
  return resultOfText(text, contentType)
}

/**
 * The reply body for the events. When Fastify serialized the handler's value to JSON and
 * the payload is still that text, the text is the body's JSON as the client gets it: an
 * event whose data is the whole body carries it as is, and it is parsed only if a mapper
 * or a keyField needs the value.
 */
function replyBody (payload: unknown, contentType: unknown, beforeSerialization: { value: unknown } | undefined): ReplyBody {
  let parsed: { value: unknown } | undefined
  const value = (): unknown => (parsed ??= { value: resultOf(payload, contentType, beforeSerialization) }).value
  const json = beforeSerialization !== undefined && typeof payload === 'string' && payload !== '' && isJsonType(contentType) ? payload : undefined
  return { value, json }
}

function describeRoute (routeOptions: { method?: string | string[] | undefined, url?: string | undefined }): string {
  const method = Array.isArray(routeOptions.method) ? routeOptions.method.join(',') : routeOptions.method
  return `route ${method} ${routeOptions.url} config.event`
}

const plugin: FastifyPluginAsync<HeraldFastifyOptions> = async (app: FastifyInstance, options: HeraldFastifyOptions) => {
  if (app.hasDecorator('messaging')) {
    throw new HeraldError('herald is already registered on this Fastify instance (app.messaging exists): register it once, at the root, and pass { messaging } to share one instance', { code: 'HERALD_ALREADY_REGISTERED' })
  }
  const { messaging, owned, health } = messagingFrom(options ?? {})

  // Resolved configs by `config.event` value: Fastify copies a route's `config` but keeps
  // the values it holds, so the object checked in onRoute is the one a request sees.
  const checked = new WeakMap<object, EventConfig[]>()
  const serialized = new WeakMap<FastifyReply, { value: unknown }>()

  app.addHook('onRoute', (routeOptions) => {
    const value: unknown = routeOptions.config?.event
    if (value === undefined) return
    const configs = resolveEventConfigs(value, describeRoute(routeOptions))
    checked.set(value as object, configs)
  })

  /** The configs of the request's route; undefined when it emits nothing. */
  const configsOf = (request: FastifyRequest): EventConfig[] | undefined => {
    const value: unknown = request.routeOptions.config?.event
    if (value === undefined) return undefined
    const known = typeof value === 'object' && value !== null ? checked.get(value) : undefined
    if (known !== undefined) return known
    // The route was declared before herald finished registering, so onRoute never saw
    // it: check it now rather than drop its events.
    const configs = resolveEventConfigs(value, describeRoute(request.routeOptions))
    checked.set(value as object, configs)
    request.log.warn({ route: `${request.routeOptions.method} ${request.routeOptions.url}` }, 'herald: this route was declared before the herald plugin was ready, so its config.event was checked on its first request; `await app.register(herald, …)` before declaring routes so a bad config fails at start-up')
    return configs
  }

  app.addHook('preSerialization', (request, reply, payload, done) => {
    if (request.routeOptions.config?.event !== undefined) serialized.set(reply, { value: payload })
    done(null, payload)
  })

  app.addHook('onSend', async (request, reply, payload) => {
    // HEAD runs the GET handler for its headers only: it is not the action that emits.
    if (!isSuccess(reply.statusCode) || request.method === 'HEAD') return payload
    let configs: EventConfig[] | undefined
    try {
      configs = configsOf(request)
    } catch (err) {
      request.log.error({ reason: (err as Error).message }, 'herald: invalid config.event; the reply is turned into a 500')
      return replaceReply(reply, 500, { statusCode: 500, error: 'Internal Server Error', message: 'the route\'s event configuration is invalid; see the server log' })
    }
    if (configs === undefined) return payload
    const body = replyBody(payload, reply.getHeader('content-type'), serialized.get(reply))
    const failure = await publishRouteEvents(messaging, configs, body, request)
    if (failure === undefined) return payload
    const answer = answerForFailure(failure, `${request.method} ${request.routeOptions.url}`)
    request.log.error(answer.fields, answer.message)
    // A bug is the framework's usual 500 (through the app's error handler); a broker
    // failure that may pass is the 503 that names what to retry.
    if (answer.status === 500) throw answer.error
    return replaceReply(reply, 503, answer.body)
  })

  app.decorate('messaging', messaging)

  if (health?.livez !== undefined && health.livez !== false) {
    app.get(health.livez, async (_request, reply) => {
      const answer = livenessAnswer()
      return await reply.code(answer.status).header('cache-control', 'no-store').send(answer.body)
    })
  }
  if (health?.readyz !== undefined && health.readyz !== false) {
    app.get(health.readyz, async (_request, reply) => {
      const answer = await readinessAnswer(messaging)
      return await reply.code(answer.status).header('cache-control', 'no-store').send(answer.body)
    })
  }

  try {
    await messaging.connect()
  } catch (err) {
    if (owned) await messaging.close().catch(() => {})
    throw err
  }

  if (owned) {
    app.addHook('onClose', async () => { await messaging.close() })
  }
}

function replaceReply (reply: FastifyReply, status: number, body: unknown): string {
  reply.code(status)
  // Whatever an earlier onSend hook set for the original payload does not fit this one.
  reply.removeHeader('content-length')
  reply.removeHeader('content-encoding')
  reply.removeHeader('etag')
  reply.header('content-type', 'application/json; charset=utf-8')
  return JSON.stringify(body)
}

/**
 * The herald Fastify plugin. Decorates `app.messaging`, checks every route's
 * `config.event` when the route is added (a bad config fails `app.ready()`), and publishes
 * the events of a route from an `onSend` hook when its reply is a 2xx, before the reply
 * leaves: if the broker does not acknowledge (a failure that may pass), the client gets a
 * 503 naming the events published and not; an event that cannot be built (mapper throws,
 * data not JSON, over maxMessageBytes, keyField missing) or that the broker refuses for
 * good is a 500 through the app's error handler, and a bug publishes none of the events.
 *
 * `await` the registration before declaring routes. A `messaging` passed in is closed
 * with the app only if `closeMessaging` is true; one the plugin created always is.
 * Replies sent with `reply.hijack()` (or on `reply.raw`) bypass Fastify's hooks and emit
 * nothing; HEAD requests emit nothing.
 *
 * @example
 * import herald from 'herald/fastify'
 * await app.register(herald, { broker: 'kafka' })
 * app.post('/users', { config: { event: { name: 'user.created', topic: 'user-events', keyField: 'id' } } },
 *   async () => ({ id: 1, email: 'user@example.com' }))
 */
export const heraldFastify = fp(plugin, { fastify: '5.x', name: 'herald' })

export default heraldFastify
