import { BrokerError, ErrorCode } from '../../errors.js'
import { redactText } from '../../redact.js'

/** The secrets a RabbitMQ configuration carries: the URL password and TLS or SASL ones. */
export function rabbitMqSecrets (url: string, socketOptions: Record<string, unknown> | undefined): string[] {
  const secrets: string[] = []
  try {
    const password = new URL(url).password
    if (password !== '') secrets.push(password, safeDecode(password))
  } catch {
    // An unparsable URL was refused by the settings already.
  }
  const passphrase = socketOptions?.passphrase
  if (typeof passphrase === 'string') secrets.push(passphrase)
  const credentials = socketOptions?.credentials as { password?: unknown } | undefined
  if (typeof credentials?.password === 'string') secrets.push(credentials.password)
  return secrets.filter(s => s.length > 0)
}

/** An amqplib error as one line, without a secret. */
export function rabbitMqReason (err: unknown, secrets: string[]): string {
  const text = err instanceof Error ? err.message : String(err)
  return redactText(text, secrets)
}

/** The AMQP reply code of a channel or connection error (403, 404, 406, …), when there is one. */
export function replyCode (err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'number' ? code : undefined
}

/** Why a connection could not be opened, with what to do about it. */
export function connectError (address: string, vhost: string, err: unknown, secrets: string[]): BrokerError {
  const reason = rabbitMqReason(err, secrets)
  if (/ACCESS[-_]REFUSED|\b403\b/.test(reason)) {
    // The server answered: it is reachable, and trying again with the same credential cannot help.
    return new BrokerError(`RabbitMQ at ${address} refused the login: ${reason}; check the user name and password in the URL (or the credentials in rabbitmq.socketOptions)`, { code: ErrorCode.BrokerAuth, retriable: false, cause: err })
  }
  let hint = ''
  let retriable = true
  let code: ErrorCode = ErrorCode.BrokerUnreachable
  if (/Expected ConnectionOpenOk/.test(reason) || /NOT[-_]ALLOWED|\b530\b/.test(reason)) {
    hint = `; the server refused the virtual host "${vhost}": check that it exists and that the user has permissions on it (the URL path is the vhost, URL-encoded: "/" is %2F)`
    retriable = false
  } else if (/ECONNREFUSED/.test(reason)) {
    hint = '; is RabbitMQ running and listening on that host and port?'
  } else if (/ETIMEDOUT|timed? ?out/i.test(reason)) {
    hint = '; the host did not answer in time (connectTimeout, or rabbitmq.socketOptions.timeout): check the address, the port and any firewall'
    code = ErrorCode.ConnectTimeout
  }
  return new BrokerError(`could not reach RabbitMQ at ${address}: ${reason}${hint}`, { code, retriable, cause: err })
}

/** A publish that came back through basic.return: nothing is bound to the topic. */
export function unroutableError (topic: string, exchange: string, replyText: string): BrokerError {
  return new BrokerError(
    `no queue is bound to topic "${topic}" on exchange "${exchange}" (RabbitMQ: ${replyText}); start a consumer for it first (its queue is created when it subscribes), or bind a queue of your own to the exchange with routing key "${topic}"`,
    { code: ErrorCode.Unroutable, retriable: false }
  )
}

/** An error for what failed because a channel (or its connection) closed. */
export function channelClosedError (what: string, cause: unknown, secrets: string[]): BrokerError {
  const reason = cause === undefined ? 'the channel closed' : rabbitMqReason(cause, secrets)
  return new BrokerError(`${what}: ${reason}`, { cause })
}

/**
 * The server closed the publishing channel with a reply code (a channel error, unlike a
 * lost connection): something sent on it was refused, such as a message over
 * `max_message_size` (406 PRECONDITION_FAILED), a missing write permission (403
 * ACCESS_REFUSED) or a missing exchange (404 NOT_FOUND). 406 and 403 are not retriable: the
 * same message on a new channel is refused again (a message over the size limit is coded as
 * too large, so that the outbox sets it aside). A 404 is: a new channel declares the
 * exchange again.
 */
export function channelError (err: unknown, secrets: string[]): BrokerError {
  const reason = rabbitMqReason(err, secrets)
  const code = replyCode(err)
  const tooLarge = /larger than (the )?configured max size|max_message_size/i.test(reason)
  const hint = tooLarge
    ? '; publish less, or raise RabbitMQ\'s max_message_size (and set Herald\'s maxMessageBytes to it, to fail such sends before they reach RabbitMQ)'
    : code === 403 ? '; the user lacks the write permission on the exchange' : ''
  return new BrokerError(`RabbitMQ did not confirm the message: the publishing channel closed: ${reason}${hint}`, {
    code: tooLarge ? ErrorCode.MessageTooLarge : ErrorCode.RabbitMqChannelError,
    retriable: !(tooLarge || code === 406 || code === 403),
    cause: err
  })
}

/** True for the error of a message whose channel the server closed with a channel error. */
export function isChannelError (err: unknown): boolean {
  return err instanceof BrokerError && (err.code === ErrorCode.RabbitMqChannelError || (err.code === ErrorCode.MessageTooLarge && replyCode(err.cause) !== undefined))
}

/** Explains a failed queue or exchange declaration (a 406 means it exists with other settings). */
export function topologyError (what: string, err: unknown, secrets: string[]): BrokerError {
  const reason = rabbitMqReason(err, secrets)
  const hint = replyCode(err) === 406 || /PRECONDITION[-_]FAILED|inequivalent/.test(reason)
    ? '; it already exists with other settings (type, durability or arguments such as x-queue-type): delete it, or configure Herald to match (rabbitmq.exchange, rabbitmq.queueType)'
    : replyCode(err) === 403 || /ACCESS[-_]REFUSED/.test(reason)
      ? '; the user lacks the configure/write/read permissions this needs on the virtual host'
      : ''
  return new BrokerError(`${what}: ${reason}${hint}`, { retriable: hint === '', cause: err })
}

function safeDecode (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** Why a consumer channel closed, and what that means: a hint when RabbitMQ closed it over its consumer_timeout, the messages it cost. */
export function channelLossReason (err: unknown, secrets: string[], inFlight: number): { reason: string, text: string } {
  const reason = err === undefined ? 'the channel or its connection closed' : rabbitMqReason(err, secrets)
  const timedOut = replyCode(err) === 406 && /acknowledgement/i.test(reason)
  const hint = timedOut
    ? " (a message stayed unacknowledged longer than RabbitMQ's consumer_timeout: raise it on the server, or shorten the handler's retries and timeout)"
    : ''
  const held = inFlight > 0 ? `; the ${inFlight} message(s) being handled can no longer be acknowledged and will be delivered again` : ''
  return { reason, text: hint + held }
}
