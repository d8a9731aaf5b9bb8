// The outbox directory's files: numbered segments, the cursor, the undeliverable log; how
// each is named, read back at start-up and written durably. The spool (outbox-spool.ts)
// decides what goes where.
import { readdirSync, readFileSync, truncateSync } from 'node:fs'
import { open, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { OutgoingMessage } from '../brokers/broker.js'
import type { Logger } from '../logger.js'
import { scanSegment } from './outbox-record.js'

const SEGMENT = /^segment-(\d{12})\.log$/
export const CURSOR_FILE = 'cursor.json'
/** Events carry the application's data: readable by the service's user only. */
export const FILE_MODE = 0o600
/** Messages the broker refused for good, kept for a person to look at. */
export const UNDELIVERABLE_FILE = 'undeliverable.log'

/** How far the relay got: every line of `segment` before byte `offset`, and every earlier segment, is relayed. */
export interface Cursor {
  segment: number
  offset: number
}

/** The segment file of number `seq`. */
export function segmentPath (dir: string, seq: number): string {
  return join(dir, `segment-${String(seq).padStart(12, '0')}.log`)
}

/** The numbers of the segment files in `dir`, oldest first. */
export function listSegments (dir: string): number[] {
  return readdirSync(dir).flatMap(name => {
    const m = SEGMENT.exec(name)
    return m === null ? [] : [Number(m[1])]
  }).sort((a, b) => a - b)
}

/** What a segment holds from byte `from` on, read back at start-up; `size`: its length once a cut-short last line is dropped. */
export interface RecoveredSegment {
  records: Array<{ message: OutgoingMessage, at: number, end: number, bytes: number }>
  size: number
}

/** Reads a segment back from `from`: a last line a crash cut short is truncated away, a damaged line skipped (both logged). */
export function recoverSegment (path: string, from: number, logger: Logger): RecoveredSegment {
  const bytes = readFileSync(path)
  const records: RecoveredSegment['records'] = []
  let size = bytes.length
  for (const line of scanSegment(bytes, Math.min(from, bytes.length))) {
    if (line.entry !== undefined) {
      records.push({ message: line.entry.message, at: line.entry.at, end: line.end, bytes: line.end - line.start })
    } else if (!line.complete) {
      // A crash during an append: the fsync never returned, so no send was acknowledged for it.
      logger.warn({ file: path, offset: line.start, bytes: line.end - line.start }, 'dropped a partly written last record of the outbox (a crash during an append; it was never acknowledged)')
      truncateSync(path, line.start)
      size = line.start
    } else {
      logger.error({ file: path, offset: line.start, bytes: line.end - line.start }, 'skipped a damaged record in the outbox (checksum mismatch): it cannot be relayed')
    }
  }
  return { records, size }
}

/** The cursor of `dir`; from the start when there is none, or it is unreadable (logged: duplicates follow). */
export function readCursor (dir: string, logger: Logger): Cursor {
  let text: string
  try {
    text = readFileSync(join(dir, CURSOR_FILE), 'utf8')
  } catch {
    return { segment: 0, offset: 0 }
  }
  try {
    const cursor = JSON.parse(text) as Partial<Cursor>
    if (Number.isInteger(cursor.segment) && Number.isInteger(cursor.offset)) return { segment: cursor.segment!, offset: cursor.offset! }
  } catch {}
  logger.error({ dir }, 'the outbox cursor is unreadable; relaying every segment from its start (messages already relayed are sent again)')
  return { segment: 0, offset: 0 }
}

/** Replaces the cursor atomically (write, fsync, rename). */
export async function writeCursor (dir: string, cursor: Cursor): Promise<void> {
  const path = join(dir, CURSOR_FILE)
  const handle = await open(`${path}.tmp`, 'w', FILE_MODE)
  try {
    await handle.writeFile(JSON.stringify(cursor) + '\n')
    await handle.sync()
  } finally {
    await handle.close()
  }
  // Not fsyncing the directory: a rename lost in a crash leaves the older cursor, so duplicates, never a loss.
  await rename(`${path}.tmp`, path)
}

/** Makes a new directory entry durable (a file's own fsync does not cover its name). */
export async function syncDirectory (dir: string): Promise<void> {
  if (process.platform === 'win32') return
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
