import { readFileSync, unlinkSync } from 'node:fs'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { OutgoingMessage } from '../brokers/broker.js'
import { BrokerError, ErrorCode } from '../errors.js'
import type { Logger } from '../logger.js'
import { CURSOR_FILE, FILE_MODE, listSegments, readCursor, recoverSegment, segmentPath, syncDirectory, UNDELIVERABLE_FILE, writeCursor } from './outbox-files.js'
import { encodeRecord } from './outbox-record.js'

export { UNDELIVERABLE_FILE } from './outbox-files.js'

/** A spooled message and where its line ends, which is what the cursor records once it is relayed. */
export interface SpooledMessage {
  readonly message: OutgoingMessage
  /** When it was spooled, ms since the epoch. */
  readonly at: number
  readonly segment: number
  readonly end: number
  readonly bytes: number
}

interface OpenSegment {
  readonly seq: number
  readonly handle: FileHandle
  size: number
}

interface Write {
  readonly line: Buffer
  readonly message: OutgoingMessage
  readonly at: number
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

/**
 * The outbox's files. Messages are appended, in order, to numbered segment files
 * (`segment-000000000001.log`, one line per message, see `outbox-record.ts`); a send is
 * accepted only once its line is written and `fsync`ed (and, for a new segment, the
 * directory too). Appends that arrive while a write is on its way go together in the next
 * write: one fsync for many sends.
 *
 * The relay reads the pending messages (kept in memory too, so at most `maxBytes`) from
 * the head and, once the broker acknowledged some, `commit`s them: the cursor
 * (`cursor.json`, replaced atomically) moves past them, and segments entirely behind it
 * are deleted. On start-up the segments are read back from the cursor on; a last line
 * that a crash cut short (no newline) was never acknowledged to anyone and is dropped,
 * and a garbled line inside a segment is skipped with an error in the log.
 */
export class OutboxSpool {
  readonly dir: string
  readonly maxBytes: number
  readonly #segmentBytes: number
  readonly #logger: Logger
  /** Segment files on disk and their sizes. */
  readonly #segments = new Map<number, number>()
  #records: SpooledMessage[] = []
  #head = 0
  #bytes = 0
  /** Bytes of writes on their way: counted against `maxBytes` already. */
  #reserved = 0
  #queue: Write[] = []
  #writing: Promise<void> | undefined
  #current: OpenSegment | undefined
  #nextSeq: number
  /** Deleting drained segments, in the background. */
  #cleanup: Promise<void> = Promise.resolve()
  #undeliverable = 0
  #closed = false
  /** Told when messages were written (the relay waits for them). */
  onWritten: () => void = () => {}

  /** Reads what a previous run left (synchronously: this is start-up). `dir` exists and is locked. */
  constructor (dir: string, maxBytes: number, logger: Logger) {
    this.dir = dir
    this.maxBytes = maxBytes
    this.#segmentBytes = Math.min(8 * 1024 * 1024, Math.max(64 * 1024, Math.floor(maxBytes / 8)))
    this.#logger = logger
    const cursor = readCursor(dir, logger)
    const seqs = listSegments(dir)
    for (const seq of seqs) {
      const path = segmentPath(dir, seq)
      if (seq < cursor.segment) {
        // Relayed entirely; a crash came before its deletion.
        unlinkSync(path)
        continue
      }
      const { records, size } = recoverSegment(path, seq === cursor.segment ? cursor.offset : 0, logger)
      for (const r of records) {
        this.#records.push({ ...r, segment: seq })
        this.#bytes += r.bytes
      }
      this.#segments.set(seq, size)
    }
    try { unlinkSync(join(dir, `${CURSOR_FILE}.tmp`)) } catch {}
    // What earlier runs set aside still needs a person: counted until the file is removed.
    try { this.#undeliverable = readFileSync(join(dir, UNDELIVERABLE_FILE), 'latin1').split('\n').length - 1 } catch {}
    this.#nextSeq = Math.max(cursor.segment, ...seqs) + 1
  }

  /** Messages waiting to be relayed. */
  get pending (): number {
    return this.#records.length - this.#head
  }

  /** Bytes of the messages waiting to be relayed. */
  get bytes (): number {
    return this.#bytes
  }

  /** True when nothing is pending and nothing is being written: sends may go to the broker directly. */
  get idle (): boolean {
    return this.pending === 0 && this.#queue.length === 0 && this.#writing === undefined
  }

  /** When the oldest pending message was spooled (ms since the epoch). */
  get oldest (): number | undefined {
    return this.#records[this.#head]?.at
  }

  /** Messages set aside as undeliverable: the lines of `undeliverable.log`, earlier runs' included. */
  get undeliverable (): number {
    return this.#undeliverable
  }

  /**
   * Appends a message behind everything spooled; resolves once it is on disk (fsynced).
   * Rejects with a `BrokerError` (`HERALD_OUTBOX_FULL`) when it would take the outbox over
   * `maxBytes`, or (`HERALD_OUTBOX_WRITE`) when the disk refused it.
   */
  append (message: OutgoingMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new BrokerError(`the outbox at ${this.dir} is closed`, { code: ErrorCode.OutboxWrite, retriable: false }))
    const at = Date.now()
    const line = encodeRecord(message, at)
    if (this.#bytes + this.#reserved + line.length > this.maxBytes) {
      return Promise.reject(new BrokerError(
        `the outbox is full and the broker is unreachable: ${this.pending} messages (${this.#bytes} bytes) wait in ${this.dir} to be relayed, and this one (${line.length} bytes) would take it over outbox.maxBytes (${this.maxBytes}); it was not stored. Bring the broker back, or give the outbox more room (outbox.maxBytes)`,
        { code: ErrorCode.OutboxFull, retriable: true }))
    }
    this.#reserved += line.length
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ line, message, at, resolve, reject })
      this.#writing ??= this.#writeLoop().finally(() => {
        this.#writing = undefined
        this.onWritten()
      })
    })
  }

  /** The first `n` pending messages, oldest first. */
  peek (n: number): SpooledMessage[] {
    return this.#records.slice(this.#head, this.#head + n)
  }

  /**
   * The first `count` pending messages are with the broker: moves the cursor past them
   * (persisted before this resolves) and deletes the segments now entirely behind it.
   * A failure to persist is logged: at worst those messages are sent again after a crash.
   */
  async commit (count: number): Promise<void> {
    const done = this.#records.slice(this.#head, this.#head + count)
    const last = done.at(-1)
    if (last === undefined) return
    this.#head += done.length
    this.#bytes -= done.reduce((sum, r) => sum + r.bytes, 0)
    if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records = this.#records.slice(this.#head)
      this.#head = 0
    }
    try {
      await writeCursor(this.dir, { segment: last.segment, offset: last.end })
    } catch (err) {
      this.#logger.error({ dir: this.dir, err: (err as Error).message }, 'could not save the outbox cursor; after a crash, messages already relayed would be sent again')
      return
    }
    for (const seq of [...this.#segments.keys()]) {
      if (seq < last.segment && seq !== this.#current?.seq) await this.#deleteSegment(seq)
    }
  }

  /**
   * Keeps a message the broker refused for good (unroutable, too large) in
   * `undeliverable.log`, with the reason, so that it neither blocks the spool nor vanishes.
   */
  async setAside (record: SpooledMessage, reason: string): Promise<void> {
    const handle = await open(join(this.dir, UNDELIVERABLE_FILE), 'a', FILE_MODE)
    try {
      await handle.write(encodeRecord(record.message, record.at, { reason, failedAt: new Date().toISOString() }))
      await handle.sync()
    } finally {
      await handle.close()
    }
    this.#undeliverable++
  }

  /**
   * When nothing is pending or being written, closes and deletes the segments (the cursor
   * already says they are relayed) and returns true: sends go to the broker again.
   */
  finishDrain (): boolean {
    if (!this.idle) return false
    const current = this.#current
    this.#current = undefined
    const seqs = [...this.#segments.keys()]
    this.#cleanup = this.#cleanup.then(async () => {
      await current?.handle.close().catch(() => {})
      for (const seq of seqs) await this.#deleteSegment(seq)
    })
    return true
  }

  /** Waits for the writes on their way, then closes the files. What is pending stays for the next start. */
  async close (): Promise<void> {
    while (this.#writing !== undefined) await this.#writing
    this.#closed = true
    await this.#cleanup
    await this.#current?.handle.close().catch(() => {})
    this.#current = undefined
  }

  async #writeLoop (): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0)
      const data = Buffer.concat(batch.map(w => w.line))
      let segment: OpenSegment | undefined
      try {
        segment = await this.#writable()
        for (let written = 0; written < data.length;) {
          const { bytesWritten } = await segment.handle.write(data, written, data.length - written, segment.size + written)
          written += bytesWritten
        }
        await segment.handle.sync()
      } catch (err) {
        this.#reserved -= data.length
        if (segment !== undefined) await this.#abandon(segment)
        const error = new BrokerError(`could not write to the outbox at ${this.dir}: ${(err as Error).message}`, { code: ErrorCode.OutboxWrite, retriable: true, cause: err })
        this.#logger.error({ dir: this.dir, err: (err as Error).message }, 'could not write to the outbox; the sends it was for fail')
        for (const w of batch) w.reject(error)
        continue
      }
      let end = segment.size
      for (const w of batch) {
        end += w.line.length
        this.#records.push({ message: w.message, at: w.at, segment: segment.seq, end, bytes: w.line.length })
      }
      segment.size = end
      this.#segments.set(segment.seq, end)
      this.#bytes += data.length
      this.#reserved -= data.length
      for (const w of batch) w.resolve()
      if (segment.size >= this.#segmentBytes) {
        // Roll over, so that relayed segments can be deleted while sends keep coming.
        this.#current = undefined
        await segment.handle.close().catch(() => {})
      }
      this.onWritten()
    }
  }

  /** The segment to append to: a new one (its directory entry fsynced) when there is none. */
  async #writable (): Promise<OpenSegment> {
    if (this.#current !== undefined) return this.#current
    const seq = this.#nextSeq++
    const handle = await open(segmentPath(this.dir, seq), 'wx', FILE_MODE)
    try {
      await syncDirectory(this.dir)
    } catch (err) {
      await handle.close().catch(() => {})
      throw err
    }
    this.#segments.set(seq, 0)
    this.#current = { seq, handle, size: 0 }
    return this.#current
  }

  /**
   * After a failed write or fsync the segment's tail is unknown (and after a failed fsync,
   * so is the page cache): cut it back to what was acknowledged and append elsewhere.
   */
  async #abandon (segment: OpenSegment): Promise<void> {
    if (this.#current === segment) this.#current = undefined
    await segment.handle.truncate(segment.size).catch(() => {})
    await segment.handle.close().catch(() => {})
  }

  async #deleteSegment (seq: number): Promise<void> {
    try {
      await unlink(segmentPath(this.dir, seq))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#logger.warn({ dir: this.dir, err: (err as Error).message }, 'could not delete a relayed outbox segment')
        return
      }
    }
    this.#segments.delete(seq)
  }
}
