import { ConfigError } from './errors.js'

/** The part of a pino logger Herald uses; pino, Fastify's `request.log` and console-like loggers fit. */
export interface Logger {
  debug(obj: unknown, msg?: string): void
  info(obj: unknown, msg?: string): void
  warn(obj: unknown, msg?: string): void
  error(obj: unknown, msg?: string): void
  child?(bindings: Record<string, unknown>): Logger
}

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const
type Level = typeof LEVELS[number]

/**
 * Herald's default logger: one line per record on stderr, from the level in
 * `HERALD_LOG_LEVEL` (default `warn`; `silent` turns it off). Pass a pino logger as
 * `logger` to get structured logs instead.
 */
export function createDefaultLogger (level: string = process.env.HERALD_LOG_LEVEL ?? 'warn', bindings: Record<string, unknown> = {}): Logger {
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError('HERALD_LOG_LEVEL', `unknown level "${level}"; use one of ${LEVELS.join(', ')} (default warn), or pass your own logger`)
  }
  const min = LEVELS.indexOf(level as Level)
  const write = (lvl: Level, obj: unknown, msg?: string): void => {
    if (LEVELS.indexOf(lvl) < min) return
    const fields = { ...bindings, ...(obj !== null && typeof obj === 'object' ? obj as Record<string, unknown> : {}) }
    const text = typeof obj === 'string' ? obj : msg ?? ''
    const extra = Object.entries(fields).map(([k, v]) => `${k}=${v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
    process.stderr.write(`herald ${lvl}: ${text}${extra === '' ? '' : ' ' + extra}\n`)
  }
  return {
    debug: (o, m) => write('debug', o, m),
    info: (o, m) => write('info', o, m),
    warn: (o, m) => write('warn', o, m),
    error: (o, m) => write('error', o, m),
    child: (b) => createDefaultLogger(level, { ...bindings, ...b })
  }
}

/** A child logger when the logger supports it, else the logger itself. */
export function childLogger (logger: Logger, bindings: Record<string, unknown>): Logger {
  return typeof logger.child === 'function' ? logger.child(bindings) : logger
}
