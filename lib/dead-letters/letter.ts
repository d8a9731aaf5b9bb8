import type { OutgoingMessage, StoredMessage } from '../brokers/broker.js'
import { HEADER_EVENT_ID, HEADER_EVENT_NAME } from '../event.js'
import { DLQ_HEADERS } from '../runner/dead-letter.js'

/** Headers a replayed message carries: where it came from, and how many times it was replayed. */
export const REPLAY_HEADERS = {
  from: 'herald-replayed-from',
  count: 'herald-replay-count'
} as const

/** Characters of body shown in a letter's `preview`. */
const PREVIEW_CHARS = 80

/** One dead letter, as `deadLetters().list()` shows it. */
export interface DeadLetter {
  /** The broker's position: Kafka `partition:offset`, a Redis stream entry id, RabbitMQ its place in this listing (1, 2, …), memory its sequence number. */
  id: string
  key: string | undefined
  /** `herald-dlq-reason`; `(no reason)` for a message that does not carry one. */
  reason: string
  /** The topic and group that failed (`herald-dlq-topic`, `herald-dlq-group`). */
  topic: string | undefined
  group: string | undefined
  /** Attempts made before it was dead-lettered (`herald-dlq-attempts`). */
  attempts: number | undefined
  /** When it was dead-lettered, ISO-8601 (`herald-dlq-failed-at`). */
  failedAt: string | undefined
  /** From the `event-name` / `event-id` headers, else from the body when it is a Herald envelope. */
  eventName: string | undefined
  eventId: string | undefined
  /** Body size in bytes. */
  size: number
  /** The body's first 80 characters (newlines as spaces), or its first bytes in hex (`hex:…`) when it is not UTF-8. */
  preview: string
  /** The letter holds only a pointer to the original (`herald-dlq-truncated`): it cannot be replayed. */
  truncated: boolean
  /** How many times it was replayed already (`herald-replay-count`). */
  replayCount: number
  headers: Record<string, string>
}

/** Matches a letter: a substring of its reason, or a function of the letter. */
export type LetterFilter = string | ((letter: DeadLetter) => boolean)

export function matches (letter: DeadLetter, filter: LetterFilter | undefined): boolean {
  if (filter === undefined) return true
  return typeof filter === 'string' ? letter.reason.includes(filter) : filter(letter)
}

export function describeLetter (stored: StoredMessage): DeadLetter {
  const h = stored.headers
  const envelope = h[HEADER_EVENT_ID] === undefined ? envelopeOf(stored.value) : undefined
  const attempts = Number(h[DLQ_HEADERS.attempts])
  return {
    id: stored.id,
    key: stored.key,
    reason: h[DLQ_HEADERS.reason] ?? '(no reason)',
    topic: h[DLQ_HEADERS.topic],
    group: h[DLQ_HEADERS.group],
    attempts: h[DLQ_HEADERS.attempts] !== undefined && Number.isInteger(attempts) ? attempts : undefined,
    failedAt: h[DLQ_HEADERS.failedAt],
    eventName: h[HEADER_EVENT_NAME] ?? envelope?.name,
    eventId: h[HEADER_EVENT_ID] ?? envelope?.id,
    size: stored.value.length,
    preview: preview(stored.value),
    truncated: h[DLQ_HEADERS.truncated] === 'true',
    replayCount: replayCount(h),
    headers: { ...h }
  }
}

function replayCount (headers: Record<string, string>): number {
  const n = Number(headers[REPLAY_HEADERS.count])
  return Number.isInteger(n) && n > 0 ? n : 0
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** At most 80 characters of the body; bytes that are not UTF-8 are shown in hex. */
export function preview (value: Buffer): string {
  let text: string
  try {
    text = utf8.decode(value)
  } catch {
    // "hex:", two characters a byte, and "…" when cut.
    const bytes = Math.floor((PREVIEW_CHARS - 5) / 2)
    return `hex:${value.subarray(0, bytes).toString('hex')}${value.length > bytes ? '…' : ''}`
  }
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ')
  return flat.length > PREVIEW_CHARS ? `${flat.slice(0, PREVIEW_CHARS - 1)}…` : flat
}

function envelopeOf (value: Buffer): { id?: string, name?: string } | undefined {
  if (value.length > 1_000_000 || value[0] !== 0x7b) return undefined
  try {
    const parsed = JSON.parse(value.toString('utf8')) as Record<string, unknown>
    if (typeof parsed.id !== 'string' || typeof parsed.name !== 'string' || !('data' in parsed)) return undefined
    return { id: parsed.id, name: parsed.name }
  } catch {
    return undefined
  }
}

/** Why a letter may not be replayed to `group` of `topic`, or undefined when it may. */
export function refusal (letter: DeadLetter, topic: string, group: string, maxReplays: number): string | undefined {
  if (letter.truncated) return 'it holds only a pointer to the original message (herald-dlq-truncated), not the message: send the original again from its topic'
  if (letter.topic !== undefined && letter.topic !== topic) return `it failed on topic "${letter.topic}", not "${topic}": replay it with that topic`
  if (letter.group !== undefined && letter.group !== group) return `it failed in group "${letter.group}", not "${group}": replay it with that group`
  if (letter.replayCount >= maxReplays) return `it was replayed ${letter.replayCount} times already (maxReplays ${maxReplays}): fix the cause first, or raise maxReplays`
  return undefined
}

/** Headers a replay does not copy: its own (set again), and a quorum queue's delivery count (the replay is a new message). */
const DROPPED_ON_REPLAY = new Set<string>([REPLAY_HEADERS.from, REPLAY_HEADERS.count, 'x-delivery-count'])

/** The message a replay sends: body and key unchanged, the `herald-dlq-*` headers removed, the replay headers set. */
export function replayMessage (stored: StoredMessage, letter: DeadLetter, topic: string, destination: string): OutgoingMessage {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(stored.headers)) {
    if (!name.startsWith('herald-dlq-') && !DROPPED_ON_REPLAY.has(name)) headers[name] = value
  }
  headers[REPLAY_HEADERS.from] = destination
  headers[REPLAY_HEADERS.count] = String(letter.replayCount + 1)
  return { topic, value: stored.value, key: stored.key, headers }
}
