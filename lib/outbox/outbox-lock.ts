import { linkSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { readFile, utimes } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'

export const LOCK_FILE = 'outbox.lock'

/** How often the holder touches its lock file, in ms. */
const REFRESH_MS = 10_000

/**
 * A lock file nobody touched for this long (ms) belongs to a process that is gone or
 * frozen, wherever it ran (another host on a shared volume, another container's pid
 * namespace, where its pid means nothing here).
 */
const STALE_MS = 60_000

/** Directories locked by this process: its own pid in a lock file is a previous life of that pid (a container restart) unless listed here. */
const heldHere = new Set<string>()

interface LockOwner {
  pid: number
  hostname: string
  since: string
}

/**
 * One relay per outbox directory: two processes relaying one spool would send every
 * message twice and out of order. The lock is the file `outbox.lock`, created atomically
 * (written aside, then hard-linked into place, so it is never seen empty) with the
 * owner's pid and host name, and touched every 10 s. A lock is taken over when its owner
 * is certainly gone: a dead pid on this host, this very pid (a restarted container whose
 * process got the same pid), or no touch for 60 s.
 */
export class OutboxLock {
  readonly path: string
  readonly #dir: string
  readonly #content: string
  readonly #timer: NodeJS.Timeout
  #released = false

  private constructor (dir: string, path: string, content: string, logger: Logger) {
    this.#dir = dir
    this.path = path
    this.#content = content
    heldHere.add(dir)
    let warned = false
    this.#timer = setInterval(() => {
      const now = new Date()
      void (async () => {
        // The owner checks it still owns the file: if another process took it over (this
        // one was frozen for a minute), both now relay, and someone must know.
        const current = await readFile(path, 'utf8').catch(() => undefined)
        if (current !== this.#content) {
          if (!warned) logger.error({ lock: path }, 'the outbox lock file was removed or taken over by another process; two processes may relay the same spool (duplicates). Give each process its own outbox.dir')
          warned = true
          return
        }
        await utimes(path, now, now)
      })().catch(() => {})
    }, REFRESH_MS)
    this.#timer.unref()
  }

  /** Takes the lock of `dir` (which exists), or throws a `ConfigError` saying who holds it and what to do. */
  static acquire (dir: string, logger: Logger): OutboxLock {
    const path = join(dir, LOCK_FILE)
    if (heldHere.has(dir)) {
      throw new ConfigError('outbox.dir', `"${dir}" is already the outbox of another Messaging instance in this process; give each instance its own directory, or share one instance (pass { messaging } to the plugin or middleware)`)
    }
    const owner: LockOwner = { pid: process.pid, hostname: hostname(), since: new Date().toISOString() }
    const content = JSON.stringify(owner) + '\n'
    const aside = join(dir, `${LOCK_FILE}.${process.pid}.tmp`)
    try {
      writeFileSync(aside, content, { mode: 0o644 })
    } catch (err) {
      throw notWritable(dir, err)
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          linkSync(aside, path)
          return new OutboxLock(dir, path, content, logger)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw notWritable(dir, err)
        }
        const held = readOwner(path)
        if (attempt > 0 || (held !== undefined && !isStale(held, path, dir))) throw inUse(dir, path, held)
        logger.warn({ lock: path, previousOwner: held === undefined ? 'unknown' : `${held.pid}@${held.hostname}` }, 'taking over the outbox lock of a process that is gone')
        try {
          unlinkSync(path)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw notWritable(dir, err)
        }
      }
    } finally {
      try { unlinkSync(aside) } catch {}
    }
  }

  /** Removes the lock file (when it is still this process's). Idempotent. */
  release (): void {
    if (this.#released) return
    this.#released = true
    clearInterval(this.#timer)
    heldHere.delete(this.#dir)
    try {
      if (readFileSync(this.path, 'utf8') === this.#content) unlinkSync(this.path)
    } catch {
      // Already gone: nothing to release.
    }
  }
}

function readOwner (path: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>
    if (typeof owner.pid !== 'number' || typeof owner.hostname !== 'string') return undefined
    return { pid: owner.pid, hostname: owner.hostname, since: String(owner.since) }
  } catch {
    return undefined
  }
}

function isStale (owner: LockOwner, path: string, dir: string): boolean {
  let touched: number
  try {
    touched = statSync(path).mtimeMs
  } catch {
    return true
  }
  if (Date.now() - touched > STALE_MS) return true
  if (owner.hostname !== hostname()) return false
  if (owner.pid === process.pid) return !heldHere.has(dir)
  return !isAlive(owner.pid)
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function inUse (dir: string, path: string, owner: LockOwner | undefined): ConfigError {
  const who = owner === undefined ? 'another process' : `process ${owner.pid} on host "${owner.hostname}" (since ${owner.since})`
  return new ConfigError('outbox.dir', `"${dir}" is in use by ${who}, which holds ${path}: one process per outbox directory, so that two relays never send the same spool. Give this process its own directory (e.g. with the instance or pod name in the path), or stop the other one; a lock not refreshed for ${STALE_MS / 1000} s is taken over`)
}

/** Why the outbox directory cannot be used, with the fix. */
export function notWritable (dir: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const reason = err instanceof Error ? err.message : String(err)
  const fix = code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
    ? `make it writable by this process (uid ${process.getuid?.() ?? '?'}), or choose another directory`
    : 'choose a directory this process can create and write to'
  return new ConfigError('outbox.dir', `"${dir}" cannot be used as the outbox (${reason}); ${fix}`)
}
