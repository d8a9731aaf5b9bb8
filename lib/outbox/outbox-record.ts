/**
 * How one message sits in a spool segment: one line, `<crc32 as 8 hex digits> <json>\n`,
 * the JSON being `{"at","topic","key","headers","value"}` (`value` the body as text, or
 * `value64` in base64 when the body is not UTF-8). Lines, so an operator can read a
 * segment with `cat`; the checksum, so a line a crash cut short or a disk garbled is
 * told apart from a message.
 */
import { crc32 } from 'node:zlib'
import type { OutgoingMessage } from '../brokers/broker.js'

const NEWLINE = 0x0a
const CHECKSUM_LENGTH = 8

/** A message read back from a segment, with when it was spooled (ms since the epoch). */
export interface SpoolEntry {
  message: OutgoingMessage
  at: number
}

/** The line of a message, newline included. */
export function encodeRecord (message: OutgoingMessage, at: number, extra: Record<string, unknown> = {}): Buffer {
  const text = message.value.toString('utf8')
  const body: Record<string, unknown> = { at, topic: message.topic, key: message.key ?? null, headers: message.headers }
  if (Buffer.from(text, 'utf8').equals(message.value)) body.value = text
  else body.value64 = message.value.toString('base64')
  const json = Buffer.from(JSON.stringify({ ...body, ...extra }), 'utf8')
  const checksum = crc32(json).toString(16).padStart(CHECKSUM_LENGTH, '0')
  return Buffer.concat([Buffer.from(`${checksum} `, 'latin1'), json, Buffer.from([NEWLINE])])
}

/** A line (without its newline) back to its message, or `undefined` when it is not an intact record. */
export function decodeRecord (line: Buffer): SpoolEntry | undefined {
  if (line.length <= CHECKSUM_LENGTH + 1 || line[CHECKSUM_LENGTH] !== 0x20) return undefined
  const checksum = Number.parseInt(line.subarray(0, CHECKSUM_LENGTH).toString('latin1'), 16)
  const json = line.subarray(CHECKSUM_LENGTH + 1)
  if (!Number.isInteger(checksum) || crc32(json) !== checksum) return undefined
  try {
    const body = JSON.parse(json.toString('utf8')) as Record<string, unknown>
    const headers = body.headers
    if (typeof body.topic !== 'string' || headers === null || typeof headers !== 'object') return undefined
    const value = typeof body.value === 'string'
      ? Buffer.from(body.value, 'utf8')
      : typeof body.value64 === 'string' ? Buffer.from(body.value64, 'base64') : undefined
    if (value === undefined) return undefined
    return {
      at: typeof body.at === 'number' ? body.at : 0,
      message: { topic: body.topic, key: typeof body.key === 'string' ? body.key : undefined, headers: headers as Record<string, string>, value }
    }
  } catch {
    return undefined
  }
}

/** One line of a segment: where it starts and ends (newline included), and what it holds. */
export interface ScannedLine {
  start: number
  end: number
  entry: SpoolEntry | undefined
  /** False for the bytes after the last newline: a line whose write never completed. */
  complete: boolean
}

/** Splits a segment's bytes from `from` into lines. */
export function scanSegment (bytes: Buffer, from: number): ScannedLine[] {
  const lines: ScannedLine[] = []
  let start = from
  while (start < bytes.length) {
    const newline = bytes.indexOf(NEWLINE, start)
    if (newline === -1) {
      lines.push({ start, end: bytes.length, entry: undefined, complete: false })
      break
    }
    lines.push({ start, end: newline + 1, entry: decodeRecord(bytes.subarray(start, newline)), complete: true })
    start = newline + 1
  }
  return lines
}
