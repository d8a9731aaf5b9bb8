/**
 * `herald dlq list|replay|purge --topic T --group G`: a group's dead letters from the
 * command line, through `messaging.deadLetters()`. The broker comes from `--broker` and the
 * same environment variables as `herald consumer`.
 */
import { parseArgs } from 'node:util'
import { createMessaging, type BrokerKind, type DeadLetter, type DeadLetterOutcome, type DeadLetters } from '../lib/index.js'
import { describeParseError, EXIT_OK, UsageError } from './cli-usage.js'

export const DLQ_USAGE = `Commands of "herald dlq" (a group's dead letters, <topic>.<group>.dlq):
  herald dlq list   --topic T --group G [--limit N] [--json]
                          Count by reason, then the oldest N letters (default 100)
                          and the total. Reads without consuming anything.
  herald dlq replay --topic T --group G [--limit N] [--dry-run] [--rate N]
                    [--filter TEXT] [--max-replays N] [--json]
                          Send letters back to group G only, oldest first,
                          at most N per second with --rate; each letter is removed
                          once its replay is stored, so running it twice replays
                          nothing twice. --dry-run counts by reason, sends nothing.
  herald dlq purge  --topic T --group G [--filter TEXT] [--limit N] [--yes] [--json]
                          Remove letters; without --yes only count them.
  --filter TEXT           Only letters whose reason contains TEXT.
  --max-replays N         Refuse letters replayed N times already. Default 5.
  --broker B              As for "herald consumer", with the same environment.
`

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  topic: { type: 'string' },
  group: { type: 'string' },
  broker: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  rate: { type: 'string' },
  filter: { type: 'string' },
  'max-replays': { type: 'string' },
  yes: { type: 'boolean' }
} as const

/** What `list()` shows without a limit. */
const DEFAULT_LIST_LIMIT = 100

const ACTIONS = ['list', 'replay', 'purge'] as const
type Action = typeof ACTIONS[number]

function parse (args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UsageError(describeParseError(err))
  }
}

function whole (flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${flag} must be a whole number of at least ${min}, e.g. 10; got "${value}"`)
  return Number(value)
}

function perSecond (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const rate = Number(value.replace(/\/s$/, ''))
  if (value === '' || !Number.isFinite(rate) || rate <= 0) throw new UsageError(`--rate must be a number of letters per second above 0, e.g. 10; got "${value}"`)
  return rate
}

/** Runs `herald dlq …`; resolves with the exit code. */
export async function dlq (args: string[]): Promise<number> {
  const { values, positionals } = parse(args)
  if (values.help === true) {
    process.stdout.write(DLQ_USAGE)
    return EXIT_OK
  }
  const [action, ...rest] = positionals
  if (action === undefined) throw new UsageError('give what to do: herald dlq list|replay|purge --topic T --group G')
  if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown dlq command "${action}"; the dlq commands are: ${ACTIONS.join(', ')}`)
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]!}"; give the topic with --topic T and the group with --group G`)
  if (values.topic === undefined || values.topic === '') throw new UsageError('--topic T is needed: the topic whose group failed')
  if (values.group === undefined || values.group === '') throw new UsageError('--group G is needed: the group whose dead letters to read')
  const limit = whole('--limit', values.limit, 1)
  const rate = perSecond(values.rate)
  const maxReplays = whole('--max-replays', values['max-replays'], 0)
  if (action !== 'replay' && (rate !== undefined || maxReplays !== undefined || values['dry-run'] === true)) {
    throw new UsageError(`--rate, --max-replays and --dry-run are options of "herald dlq replay" (purge counts without --yes)`)
  }
  // A bad broker name is a ConfigError naming "broker" and the allowed values.
  const messaging = createMessaging({ broker: values.broker as BrokerKind | undefined })
  try {
    const letters = messaging.deadLetters({ topic: values.topic, group: values.group })
    const json = values.json === true
    switch (action as Action) {
      case 'list': {
        const list = await letters.list({ limit })
        // All of them, or the first `limit`: then ask how many there are.
        const total = list.length < (limit ?? DEFAULT_LIST_LIMIT) ? list.length : await letters.count()
        printList(letters, list, total, json)
        break
      }
      case 'replay': printOutcome('replay', letters, await letters.replay({ limit, rate, maxReplays, filter: values.filter, dryRun: values['dry-run'] === true }), json); break
      case 'purge': printOutcome('purge', letters, await letters.purge({ limit, filter: values.filter, dryRun: values.yes !== true }), json)
    }
  } finally {
    await messaging.close().catch(() => {})
  }
  return EXIT_OK
}

function out (line = ''): void {
  process.stdout.write(`${line}\n`)
}

function countByReason (letters: DeadLetter[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const l of letters) counts[l.reason] = (counts[l.reason] ?? 0) + 1
  return counts
}

function printReasons (byReason: Record<string, number>): void {
  const rows = Object.entries(byReason).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  const width = Math.max(0, ...rows.map(([, n]) => String(n).length))
  for (const [reason, n] of rows) out(`  ${String(n).padStart(width)}  ${reason}`)
}

function cut (text: string | undefined, max: number): string {
  if (text === undefined || text === '') return '-'
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

function printList (letters: DeadLetters, list: DeadLetter[], total: number | undefined, json: boolean): void {
  const byReason = countByReason(list)
  if (json) {
    out(JSON.stringify({ destination: letters.destination, total: total ?? null, byReason, letters: list }))
    return
  }
  if (list.length === 0) {
    out(`no dead letters in ${letters.destination}`)
    return
  }
  const some = total === list.length ? '' : `the first ${list.length} of ${total ?? 'the'} `
  out(`${some}dead letters in ${letters.destination}, by reason:`)
  printReasons(byReason)
  out()
  const rows = [['ID', 'KEY', 'ATTEMPTS', 'FAILED AT', 'EVENT', 'SIZE', 'REASON', 'PREVIEW']]
  for (const l of list) {
    rows.push([l.id, cut(l.key, 24), l.attempts === undefined ? '-' : String(l.attempts), l.failedAt ?? '-', cut(l.eventName, 24), String(l.size), cut(l.reason, 48), l.preview])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => r[i]!.length)))
  for (const r of rows) out(r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i]!)).join('  '))
  out()
  if (total === list.length) out(`total: ${total}`)
  else out(`total: ${total ?? 'not told by this broker'} (these are the first ${list.length}; raise --limit to see more)`)
}

function printOutcome (action: 'replay' | 'purge', letters: DeadLetters, outcome: DeadLetterOutcome, json: boolean): void {
  if (json) {
    out(JSON.stringify({ destination: letters.destination, action, ...outcome }))
    return
  }
  const done = action === 'replay' ? `replayed to group ${letters.group} of topic ${letters.topic}` : `purged from ${letters.destination}`
  const would = action === 'replay' ? `would be replayed to group ${letters.group} of topic ${letters.topic}` : `would be purged from ${letters.destination}`
  out(`${outcome.dryRun ? 'dry run: ' : ''}${outcome.count} dead letters ${outcome.dryRun ? would : done}${outcome.count > 0 ? ', by reason:' : ''}`)
  printReasons(outcome.byReason)
  for (const r of outcome.refused) out(`not replayed: letter ${r.id}: ${r.reason}`)
  if (outcome.dryRun && action === 'purge' && outcome.count > 0) out('nothing was removed: add --yes to remove them')
}
