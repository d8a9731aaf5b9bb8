import type { KafkaConfig } from 'kafkajs'
import { BrokerError, ErrorCode } from '../../errors.js'
import { redactText } from '../../redact.js'

/**
 * The secrets a kafkajs client configuration may carry (SASL passwords and keys, a TLS
 * passphrase), so that they can be masked in any text that reaches a log or an error.
 */
export function kafkaSecrets (client: Omit<KafkaConfig, 'brokers' | 'clientId'> | undefined): string[] {
  const secrets: string[] = []
  const collect = (source: unknown, fields: string[]): void => {
    if (source === null || typeof source !== 'object') return
    for (const field of fields) {
      const value = (source as Record<string, unknown>)[field]
      if (typeof value === 'string' && value.length > 0) secrets.push(value)
    }
  }
  collect(client?.sasl, ['password', 'secretAccessKey', 'sessionToken'])
  collect(client?.ssl, ['passphrase'])
  return secrets
}

/** A kafkajs error as one line: its message, the messages of an aggregate (createTopics), no secret. */
export function kafkaReason (err: unknown, secrets: string[]): string {
  let text: string
  if (err instanceof Error) {
    text = err.message
    const nested = (err as { errors?: unknown }).errors
    if (Array.isArray(nested) && nested.length > 0) {
      const reasons = nested.map(e => e instanceof Error ? e.message : String(e))
      text = text === '' ? reasons.join('; ') : `${text}: ${reasons.join('; ')}`
    }
  } else {
    text = String(err)
  }
  return redactText(text, secrets)
}

/**
 * Whether trying again later may help. kafkajs marks its errors `retriable`; once its own
 * retries are exhausted it reports a non-retriable wrapper whose cause (a refused
 * connection, a leader election) is what decides.
 */
export function kafkaRetriable (err: unknown): boolean {
  let e: unknown = err
  while (e instanceof Error && e.cause instanceof Error && e.cause !== e) e = e.cause
  const nested = (e as { errors?: unknown } | undefined)?.errors
  if (Array.isArray(nested) && nested.length > 0) return nested.every(n => kafkaRetriable(n))
  const retriable = (e as { retriable?: unknown } | undefined)?.retriable
  return typeof retriable === 'boolean' ? retriable : true
}

/**
 * Kafka answers that say this message or topic can never be sent, whatever the wait, with
 * Herald's code for them (the outbox sets such a message aside instead of retrying it) and
 * what to do.
 */
const UNSENDABLE: Record<string, { code: string, hint: string }> = {
  MESSAGE_TOO_LARGE: { code: ErrorCode.MessageTooLarge, hint: 'the topic\'s max.message.bytes (the broker\'s message.max.bytes by default) is smaller than this message: raise it, or publish less; set Herald\'s maxMessageBytes to that limit to fail such sends before they reach Kafka' },
  RECORD_LIST_TOO_LARGE: { code: ErrorCode.MessageTooLarge, hint: 'the batch is over the topic\'s max.message.bytes: raise it, or lower maxBatchSize' },
  INVALID_TOPIC_EXCEPTION: { code: ErrorCode.InvalidTopic, hint: 'Kafka topic names are at most 249 characters of letters, digits, ".", "_" and "-"' }
}

/** Wraps a kafkajs error in a `BrokerError` whose message starts with what Herald was doing. */
export function kafkaError (what: string, err: unknown, secrets: string[]): BrokerError {
  let e: unknown = err
  while (e instanceof Error && e.cause instanceof Error && e.cause !== e) e = e.cause
  const unsendable = kafkaErrorTypes(e).map(t => UNSENDABLE[t]).find(h => h !== undefined)
  const reason = kafkaReason(err, secrets)
  if (unsendable !== undefined) return new BrokerError(`${what}: ${reason}; ${unsendable.hint}`, { code: unsendable.code, retriable: false, cause: err })
  return new BrokerError(`${what}: ${reason}`, { retriable: kafkaRetriable(err), cause: err })
}

/** The kafkajs error type (`TOPIC_ALREADY_EXISTS`, …) of an error or of every error of an aggregate. */
export function kafkaErrorTypes (err: unknown): string[] {
  const nested = (err as { errors?: unknown } | undefined)?.errors
  const list = Array.isArray(nested) && nested.length > 0 ? nested : [err]
  return list.map(e => {
    const type = (e as { type?: unknown } | undefined)?.type
    return typeof type === 'string' ? type : ''
  })
}

/**
 * Error text that says Kafka (or the way to it) is not answering, as opposed to an answer
 * (a leader or coordinator that moved, which kafkajs retries, is an answer).
 */
export function isConnectionTrouble (text: string): boolean {
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|ENOTFOUND|EAI_AGAIN|Connection error|Connection timeout|Closed connection|connection (was )?closed|No broker available|Broker not connected|Request .* timed out|Failed to connect/i.test(text)
}
