/**
 * Every `code` a Herald error can carry, defined once. Match on these, not on messages.
 */
export const ErrorCode = {
  /** A Herald error with no more specific code. */
  Error: 'HERALD_ERROR',
  Config: 'HERALD_CONFIG',
  Handler: 'HERALD_HANDLER',
  Broker: 'HERALD_BROKER',
  BrokerUnreachable: 'HERALD_BROKER_UNREACHABLE',
  BrokerAuth: 'HERALD_BROKER_AUTH',
  BrokerClosed: 'HERALD_BROKER_CLOSED',
  ConnectTimeout: 'HERALD_CONNECT_TIMEOUT',
  Publish: 'HERALD_PUBLISH',
  PublishTimeout: 'HERALD_PUBLISH_TIMEOUT',
  MessageTooLarge: 'HERALD_MESSAGE_TOO_LARGE',
  InvalidTopic: 'HERALD_INVALID_TOPIC',
  InvalidHeader: 'HERALD_INVALID_HEADER',
  UnknownTopic: 'HERALD_UNKNOWN_TOPIC',
  Unroutable: 'HERALD_UNROUTABLE',
  NotAStream: 'HERALD_NOT_A_STREAM',
  UnknownDatabase: 'HERALD_UNKNOWN_DATABASE',
  RabbitMqChannelError: 'HERALD_RABBITMQ_CHANNEL_ERROR',
  OutboxWrite: 'HERALD_OUTBOX_WRITE',
  OutboxFull: 'HERALD_OUTBOX_FULL',
  NonRetriable: 'HERALD_NON_RETRIABLE',
  InvalidMessage: 'HERALD_INVALID_MESSAGE',
  HandlerTimeout: 'HERALD_HANDLER_TIMEOUT',
  ShutdownAbort: 'HERALD_SHUTDOWN',
  EventMapper: 'HERALD_EVENT_MAPPER',
  EventKey: 'HERALD_EVENT_KEY',
  EventEncoding: 'HERALD_EVENT_ENCODING',
  AlreadyRegistered: 'HERALD_ALREADY_REGISTERED',
  NotRegistered: 'HERALD_NOT_REGISTERED',
  /** The broker adapter cannot do what was asked (e.g. replay dead letters on Kafka). */
  Unsupported: 'HERALD_UNSUPPORTED'
} as const

export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode]

/** Codes also exported under their own names, as before `ErrorCode` existed. */
export const MESSAGE_TOO_LARGE = ErrorCode.MessageTooLarge
export const OUTBOX_FULL = ErrorCode.OutboxFull
export const OUTBOX_WRITE_FAILED = ErrorCode.OutboxWrite

/**
 * One error hierarchy for everything Herald throws. Every error has a stable `code`,
 * says whether trying again may help (`retriable`), and keeps the underlying `cause`.
 * Messages say what is wrong and how to fix it, and never carry a secret.
 */
export class HeraldError extends Error {
  readonly code: string
  readonly retriable: boolean

  constructor (message: string, options: { code?: string, retriable?: boolean, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = options.code ?? ErrorCode.Error
    this.retriable = options.retriable ?? false
  }
}

/** An option or environment variable has a value Herald cannot use. Thrown at start-up. */
export class ConfigError extends HeraldError {
  readonly option: string
  constructor (option: string, message: string) {
    super(`${option}: ${message}`, { code: ErrorCode.Config })
    this.option = option
  }
}

/** The broker could not be reached, or refused or did not acknowledge a send. */
export class BrokerError extends HeraldError {
  constructor (message: string, options: { code?: string, retriable?: boolean, cause?: unknown } = {}) {
    super(message, { code: options.code ?? ErrorCode.Broker, retriable: options.retriable ?? true, cause: options.cause })
  }
}

/** A publish that did not complete: the event was not acknowledged by the broker. */
export class PublishError extends HeraldError {
  readonly eventName: string | undefined
  readonly topic: string
  constructor (topic: string, eventName: string | undefined, cause: unknown) {
    const what = eventName === undefined ? `message to topic "${topic}"` : `event "${eventName}" to topic "${topic}"`
    const reason = cause instanceof Error ? cause.message : String(cause)
    super(`could not publish ${what}: ${reason}`, {
      code: ErrorCode.Publish,
      retriable: isRetriable(cause),
      cause
    })
    this.eventName = eventName
    this.topic = topic
  }
}

/**
 * Throw it from a handler when trying again cannot help (a business rule said no):
 * the message goes to the dead-letter destination at once, without retries.
 */
export class NonRetriableError extends HeraldError {
  constructor (message: string, options: { cause?: unknown } = {}) {
    super(message, { code: ErrorCode.NonRetriable, retriable: false, cause: options.cause })
  }
}

/** A message that cannot be decoded or does not match the handler's schema. Never retried. */
export class InvalidMessageError extends HeraldError {
  constructor (message: string, options: { cause?: unknown } = {}) {
    super(message, { code: ErrorCode.InvalidMessage, retriable: false, cause: options.cause })
  }
}

/** A handler module or definition Herald cannot use. Thrown at start-up. */
export class HandlerError extends HeraldError {
  constructor (message: string, options: { cause?: unknown } = {}) {
    super(message, { code: ErrorCode.Handler, cause: options.cause })
  }
}

/**
 * A handler attempt ran past its `timeout`: its `ctx.signal` aborts with this reason, and
 * the attempt counts as failed (retried like any failure, then dead-lettered).
 */
export class HandlerTimeoutError extends HeraldError {
  readonly timeout: number
  constructor (timeout: number) {
    super(`the handler did not finish within its timeout of ${timeout} ms (option timeout); its ctx.signal was aborted`, { code: ErrorCode.HandlerTimeout, retriable: true })
    this.timeout = timeout
  }
}

/**
 * The consumer is shutting down and stopped waiting for a running handler: its
 * `ctx.signal` aborts with this reason, and the message is given back to the broker.
 */
export class ShutdownAbortError extends HeraldError {
  constructor () {
    super('the consumer is shutting down and stopped waiting for this handler (shutdownTimeout passed); the message is released and will be delivered again', { code: ErrorCode.ShutdownAbort, retriable: true })
  }
}

/**
 * Whether trying again later may help. The one rule for the producer, the outbox relay,
 * the runner and `PublishError`: a Herald error says so with `retriable`; any other error
 * that carries a boolean `retriable: false` (kafkajs's convention) is taken at its word;
 * everything else (a plain `Error` from a handler, a network error) may pass.
 */
export function isRetriable (err: unknown): boolean {
  if (err instanceof HeraldError) return err.retriable
  return !(err instanceof Error && (err as { retriable?: unknown }).retriable === false)
}

/** Turns anything thrown (a string, an object, undefined) into a one-line reason. */
export function describeError (err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  if (typeof err === 'string') return err
  try {
    return `non-Error thrown: ${JSON.stringify(err)}`
  } catch {
    return `non-Error thrown: ${String(err)}`
  }
}
