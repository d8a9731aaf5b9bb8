/**
 * How the replies of the stream commands are read. Pure functions over what ioredis hands
 * over for a raw command (`call` / `callBuffer`): buffers or strings, RESP2 shapes, and
 * RESP3 maps flattened to `[key, value, …]` (ioredis' reply transformers apply only to
 * its named methods).
 */

/** A reply element as text (ioredis gives buffers for `callBuffer`, strings or numbers otherwise). */
export function text (value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  return String(value)
}

/** An entry in a reply: `[id, fields]`, where fields are nil for an entry deleted from the stream (Redis < 7). */
export interface RawEntry {
  id: string
  fields: unknown[] | null
}

function rawEntries (list: unknown): RawEntry[] {
  if (!Array.isArray(list)) return []
  const out: RawEntry[] = []
  for (const item of list) {
    if (!Array.isArray(item) || item.length < 1) continue
    out.push({ id: text(item[0]), fields: Array.isArray(item[1]) ? item[1] as unknown[] : null })
  }
  return out
}

/** `XREADGROUP` reply, or nil when the block timed out: `[[stream, entries], …]` (RESP2) or `[stream, entries, …]` (RESP3). */
export function parseReadReply (reply: unknown): Array<{ stream: string, entries: RawEntry[] }> {
  if (!Array.isArray(reply)) return []
  const out: Array<{ stream: string, entries: RawEntry[] }> = []
  if (reply.length > 0 && !Array.isArray(reply[0])) {
    for (let i = 0; i + 1 < reply.length; i += 2) out.push({ stream: text(reply[i]), entries: rawEntries(reply[i + 1]) })
  } else {
    for (const item of reply) if (Array.isArray(item) && item.length >= 2) out.push({ stream: text(item[0]), entries: rawEntries(item[1]) })
  }
  return out
}

/** `XAUTOCLAIM` reply: `[next cursor, [[id, fields], …], [deleted id, …]]` (the third element since Redis 7). */
export function parseAutoclaimReply (reply: unknown): { cursor: string, entries: RawEntry[], deleted: string[] } {
  if (!Array.isArray(reply)) return { cursor: '0-0', entries: [], deleted: [] }
  return {
    cursor: reply[0] === undefined ? '0-0' : text(reply[0]),
    entries: rawEntries(reply[1]),
    deleted: Array.isArray(reply[2]) ? reply[2].map(text) : []
  }
}

/** Extended `XPENDING` reply for one entry: `[[id, consumer, idle ms, delivery count]]`; 0 when not pending. */
export function parseDeliveryCount (reply: unknown): number {
  if (!Array.isArray(reply) || !Array.isArray(reply[0])) return 0
  const count = Number(text(reply[0][3]))
  return Number.isFinite(count) ? count : 0
}

/** Extended `XPENDING` reply: true when it lists at least one entry. */
export function hasPending (reply: unknown): boolean {
  return Array.isArray(reply) && reply.length > 0
}

/** The hold script's reply: one state per id (see `HOLD_STATE`). */
export function parseHoldStates (reply: unknown): number[] {
  return Array.isArray(reply) ? reply.map(s => Number(text(s))) : []
}

/** `CLIENT ID` reply: the connection's id, or undefined when the reply is not one. */
export function parseClientId (reply: unknown): number | undefined {
  if (reply === null || reply === undefined) return undefined
  const id = Number(text(reply))
  return Number.isInteger(id) ? id : undefined
}

/** Error replies Redis gives for a missing group or stream, for a group that exists, for a script it does not know. */
export function isNoGroup (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOGROUP')
}

export function isBusyGroup (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('BUSYGROUP')
}

export function isNoScript (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT')
}
