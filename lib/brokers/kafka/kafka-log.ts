import { logLevel, type LogEntry, type logCreator } from 'kafkajs'
import type { Logger } from '../../logger.js'
import { redactText } from '../../redact.js'
import type { OutageLog } from '../shared/outage-log.js'
import { isConnectionTrouble } from './kafka-errors.js'

/** A kafkajs error or warning repeated within this window is logged at debug: one line per outage, not per retry. */
const REPEAT_WINDOW_MS = 60_000
const MAX_REMEMBERED = 200

/**
 * Forwards kafkajs's log lines to Herald's logger. kafkajs is chatty and logs routine
 * events (a rebalance, a retried connection) as warnings and errors, so its levels are
 * shifted one down: ERROR → warn, WARN → info, INFO and DEBUG → debug; an error answer
 * to one request (which kafkajs retries, and reports to the caller if it gives up) → info;
 * the same error repeated within a minute → debug. A line that says Kafka is not answering
 * (a connection refused, reset or timed out, no broker available) starts an outage, which
 * `outage` logs once; while it lasts, kafkajs's errors and warnings are its echoes and go
 * to debug. kafkajs's "Crash" and "Restarting the consumer" lines go to info: the adapter
 * logs a crash itself. Buffers (request payloads, which carry SASL credentials during
 * authentication) are dropped and every known secret is masked.
 */
export function kafkaLogCreator (logger: Logger, secrets: string[], outage?: OutageLog): logCreator {
  const lastWarned = new Map<string, number>()

  const isRepeat = (key: string): boolean => {
    const now = Date.now()
    const last = lastWarned.get(key)
    if (last !== undefined && now - last < REPEAT_WINDOW_MS) return true
    if (lastWarned.size >= MAX_REMEMBERED) lastWarned.clear()
    lastWarned.set(key, now)
    return false
  }

  return () => ({ namespace, level, log }: LogEntry) => {
    const { message, timestamp: _timestamp, logger: _name, stack, broker, ...extra } = log
    const text = redactText(`kafkajs: ${String(message)}`, secrets)
    // kafkajs's `broker` (host:port) is renamed so that it does not hide the logger's own `broker` (kafka).
    const fields = sanitize({ kafkajs: namespace, ...(broker === undefined ? {} : { kafkaBroker: broker }), ...extra }, secrets)
    if (level === logLevel.ERROR || level === logLevel.WARN) {
      const said = `${String(message)} ${typeof extra.error === 'string' ? extra.error : ''}`
      if (outage !== undefined && isConnectionTrouble(said)) {
        outage.lost('connection', redactText(said.trim(), secrets))
        logger.debug(fields, text)
      } else if (outage?.active === true || isRepeat(`${namespace}|${String(message)}`)) {
        logger.debug(fields, text)
      } else if (level === logLevel.ERROR && !(namespace === 'Connection' && String(message).startsWith('Response ')) && !/^(Crash: |Restarting the consumer)/.test(String(message))) {
        logger.warn(fields, text)
      } else {
        logger.info(fields, text)
      }
      return
    }
    logger.debug(typeof stack === 'string' ? { ...fields, stack: redactText(stack, secrets) } : fields, text)
  }
}

/** A JSON-safe copy of a log line's fields: no buffers, errors as their message, secrets masked. */
function sanitize (fields: Record<string, unknown>, secrets: string[]): Record<string, unknown> {
  try {
    const json = JSON.stringify(fields, (_key, value: unknown) => {
      if (value instanceof Error) return value.message
      if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer') return '[buffer]'
      if (typeof value === 'bigint') return value.toString()
      return value
    })
    return JSON.parse(redactText(json, secrets)) as Record<string, unknown>
  } catch {
    return { kafkajs: fields.kafkajs }
  }
}
