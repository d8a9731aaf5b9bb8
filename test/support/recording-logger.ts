import { inspect } from 'node:util'
import type { Logger } from '../../lib/logger.js'

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
  at: number
}

/**
 * The one logger the tests and the fault harness record Herald's log with: it keeps every
 * record (children write to the same list, with their bindings in `fields`).
 */
export class RecordingLogger implements Logger {
  readonly records: LogRecord[]
  readonly #bindings: Record<string, unknown>

  constructor (records: LogRecord[] = [], bindings: Record<string, unknown> = {}) {
    this.records = records
    this.#bindings = bindings
  }

  #write (level: LogRecord['level'], obj: unknown, msg?: string): void {
    // An error logged as the object keeps its message and stack (spreading it would lose them).
    const fields = obj instanceof Error ? { err: obj } : obj !== null && typeof obj === 'object' ? obj as Record<string, unknown> : {}
    this.records.push({ level, msg: typeof obj === 'string' ? obj : msg ?? '', fields: { ...this.#bindings, ...fields }, at: Date.now() })
  }

  debug (obj: unknown, msg?: string): void { this.#write('debug', obj, msg) }
  info (obj: unknown, msg?: string): void { this.#write('info', obj, msg) }
  warn (obj: unknown, msg?: string): void { this.#write('warn', obj, msg) }
  error (obj: unknown, msg?: string): void { this.#write('error', obj, msg) }

  child (bindings: Record<string, unknown>): Logger {
    return new RecordingLogger(this.records, { ...this.#bindings, ...bindings })
  }

  /** The messages of the records at `level` (every level when not given). */
  messages (level?: LogRecord['level']): string[] {
    return this.records.filter(r => level === undefined || r.level === level).map(r => r.msg)
  }

  /** Warn and error records written at or after `since` (epoch ms). */
  problems (since = 0): LogRecord[] {
    return this.records.filter(r => r.at >= since && (r.level === 'warn' || r.level === 'error'))
  }

  /** Each record as one line of text, its fields in full (errors with their messages): what a log would show. */
  lines (records: LogRecord[] = this.records): string[] {
    return records.map(r => `${r.level} ${r.msg} ${inspect(r.fields, { depth: Infinity, breakLength: Infinity })}`)
  }

  /** The records with their times, for a failure message. */
  describe (records: LogRecord[] = this.records): string {
    return this.lines(records).map((line, i) => `${new Date(records[i]!.at).toISOString()} ${line}`).join('\n')
  }
}
