import type { Logger } from '../../lib/logger.js'

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
  at: number
}

/** A logger that keeps every record (children write to the same list), for tests that count log lines. */
export class RecordingLogger implements Logger {
  readonly records: LogRecord[]
  readonly #bindings: Record<string, unknown>

  constructor (records: LogRecord[] = [], bindings: Record<string, unknown> = {}) {
    this.records = records
    this.#bindings = bindings
  }

  #write (level: LogRecord['level'], obj: unknown, msg?: string): void {
    const fields = obj !== null && typeof obj === 'object' ? obj as Record<string, unknown> : {}
    this.records.push({ level, msg: typeof obj === 'string' ? obj : msg ?? '', fields: { ...this.#bindings, ...fields }, at: Date.now() })
  }

  debug (obj: unknown, msg?: string): void { this.#write('debug', obj, msg) }
  info (obj: unknown, msg?: string): void { this.#write('info', obj, msg) }
  warn (obj: unknown, msg?: string): void { this.#write('warn', obj, msg) }
  error (obj: unknown, msg?: string): void { this.#write('error', obj, msg) }

  child (bindings: Record<string, unknown>): Logger {
    return new RecordingLogger(this.records, { ...this.#bindings, ...bindings })
  }

  /** Warn and error records written at or after `since` (epoch ms). */
  problems (since = 0): LogRecord[] {
    return this.records.filter(r => r.at >= since && (r.level === 'warn' || r.level === 'error'))
  }

  describe (records: LogRecord[] = this.records): string {
    return records.map(r => `${new Date(r.at).toISOString()} ${r.level} ${r.msg} ${JSON.stringify(r.fields)}`).join('\n')
  }
}
