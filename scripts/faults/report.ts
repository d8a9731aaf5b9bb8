// The harness's figures: what the load got, what the worker handled, what was lost,
// duplicated and dead-lettered, and why; printed as one Markdown table per broker (ready
// for the README), and read back from that table by the test.
import { readFileSync } from 'node:fs'
import os from 'node:os'
import type { DeadRecord, HandledRecord, PoisonMessage } from './common.js'
import type { RawDeadLetter } from './brokers.js'
import type { LoadResult } from './load.js'

export interface FaultEvent {
  /** Short name: `broker restart 1`, `worker SIGKILL`, … */
  name: string
  startedAt: number
  endedAt: number
  detail: string
}

export interface ReportInput {
  broker: string
  brokerDescription: string
  mode: 'full' | 'short'
  rate: number
  durationMs: number
  concurrency: number
  outbox: string
  load: LoadResult
  handled: HandledRecord[]
  deadLetters: RawDeadLetter[]
  /** What the worker's dead-letter handler recorded. */
  deadRecords: DeadRecord[]
  /** Dead letters the dead-letter handler could not decode, so dead-lettered again (read raw). */
  secondLevelDeadLetters: RawDeadLetter[]
  poison: PoisonMessage[]
  faults: FaultEvent[]
  /** Pids of workers the harness SIGKILLed. */
  killedWorkers: number[]
  unexpectedExits: string[]
  drainTimeoutMs: number
  /** The children's log files. */
  serviceLog: string
  workerLog: string
  /** When the harness stopped waiting for the drain. */
  drainEndedAt: number
}

export interface Figures {
  sent: number
  ok: number
  unavailable: number
  errors: number
  otherStatus: number
  handledUnique: number
  lost: string[]
  handledWithoutOk: number
  duplicates: number
  extraDeliveries: number
  duplicateCauses: Map<string, number>
  deadLettered: number
  deadLetterReasons: Map<string, number>
  poisonAccounted: number
  poisonMissing: string[]
  otherDeadLetters: number
  /**
   * ms from the end of the last fault until every 2xx event sent before then was handled
   * (the backlog of the faults caught up), or undefined if not drained.
   */
  drainMs: number | undefined
  /** ms from the last request sent until the last 2xx event was handled. */
  tailMs: number | undefined
  lastFaultEnd: number
}

const isOk = (o: unknown): boolean => typeof o === 'number' && o >= 200 && o < 300

export function computeFigures (input: ReportInput): Figures {
  const { outcomes } = input.load
  let ok = 0; let unavailable = 0; let errors = 0; let otherStatus = 0
  for (const o of outcomes.values()) {
    if (isOk(o)) ok++
    else if (o === 503) unavailable++
    else if (typeof o === 'number') otherStatus++
    else errors++
  }
  const byRequest = new Map<string, HandledRecord[]>()
  for (const r of input.handled) {
    if (!outcomes.has(r.requestId)) continue
    let list = byRequest.get(r.requestId)
    if (list === undefined) byRequest.set(r.requestId, list = [])
    list.push(r)
  }
  const lastFaultEnd = Math.max(0, ...input.faults.map(f => f.endedAt))
  const lost: string[] = []
  let lastFirstHandling = 0
  let backlogHandled = 0
  for (const [id, o] of outcomes) {
    if (!isOk(o)) continue
    const records = byRequest.get(id)
    if (records === undefined) {
      lost.push(id)
      continue
    }
    const first = Math.min(...records.map(r => r.at))
    lastFirstHandling = Math.max(lastFirstHandling, first)
    if ((input.load.sentAt.get(id) ?? 0) <= lastFaultEnd) backlogHandled = Math.max(backlogHandled, first)
  }
  let handledWithoutOk = 0
  for (const id of byRequest.keys()) if (!isOk(outcomes.get(id))) handledWithoutOk++

  const faults = [...input.faults].sort((a, b) => a.startedAt - b.startedAt)
  const killed = new Set(input.killedWorkers)
  const duplicateCauses = new Map<string, number>()
  let duplicates = 0; let extraDeliveries = 0
  for (const records of byRequest.values()) {
    if (records.length < 2) continue
    duplicates++
    extraDeliveries += records.length - 1
    records.sort((a, b) => a.at - b.at)
    const second = records[1]!
    const twice = new Set(records.map(r => r.eventId)).size > 1
    // The fault that last began before the second handling: a redelivery comes from a
    // broker or worker fault, a second publish from a broker or service fault.
    const fault = [...faults].reverse().find(f => f.startedAt <= second.at && !f.name.startsWith('poison') && (twice || !f.name.startsWith('service')))
    const after = fault === undefined ? 'before any fault' : `after ${fault.name}`
    let why: string
    if (twice) why = `published twice (two event ids for one request), ${after}`
    else if (records.some(r => killed.has(r.pid)) && new Set(records.map(r => r.pid)).size > 1) why = 'redelivered: handled by the SIGKILLed worker, not yet acknowledged'
    else if (new Set(records.map(r => r.pid)).size > 1) why = `redelivered to another worker process, ${after}`
    else why = `redelivered to the same worker (not yet acknowledged), ${after}`
    duplicateCauses.set(why, (duplicateCauses.get(why) ?? 0) + 1)
  }

  const deadLetterReasons = new Map<string, number>()
  for (const d of input.deadLetters) {
    const reason = shortReason(d.reason)
    deadLetterReasons.set(reason, (deadLetterReasons.get(reason) ?? 0) + 1)
  }
  const poisonMissing: string[] = []
  let poisonAccounted = 0
  for (const p of input.poison) {
    const found = input.deadLetters.find(d => d.poison === p.name)
    if (found !== undefined && p.expect.test(found.reason ?? '')) poisonAccounted++
    else poisonMissing.push(found === undefined ? `${p.name} (not in the dead-letter destination)` : `${p.name} (dead-lettered with an unexpected reason: ${found.reason ?? 'none'})`)
  }
  const otherDeadLetters = input.deadLetters.filter(d => d.poison === undefined).length

  const drainMs = lost.length > 0 ? undefined : Math.max(0, backlogHandled - lastFaultEnd)
  const tailMs = lost.length > 0 ? undefined : Math.max(0, lastFirstHandling - input.load.lastSentAt)
  return {
    sent: outcomes.size,
    ok,
    unavailable,
    errors,
    otherStatus,
    handledUnique: byRequest.size,
    lost,
    handledWithoutOk,
    duplicates,
    extraDeliveries,
    duplicateCauses,
    deadLettered: input.deadLetters.length,
    deadLetterReasons,
    poisonAccounted,
    poisonMissing,
    otherDeadLetters,
    drainMs,
    tailMs,
    lastFaultEnd
  }
}

/** The gist of a dead-letter reason: the error without ids and paths that differ per message. */
function shortReason (reason: string | undefined): string {
  if (reason === undefined) return '(no reason header)'
  return reason
    .replace(/^InvalidMessageError: /, '')
    .replace(/; Herald expects.*$/, '')
    .replace(/; the handler's schema.*$/, '')
    .replace(/ \((Unexpected|Expected) .*$/, '')
    .replace(/ \(byte .*\)$/, '')
    .replace(/ \(0 bytes\)$/, '')
    .replace(/order \S+ rejected/, 'order … rejected')
    .slice(0, 100)
}

/** How many warn/error lines Herald's default logger wrote to a child's log. */
function logCount (file: string): number {
  let text = ''
  try { text = readFileSync(file, 'utf8') } catch {}
  return text.split('\n').filter(l => /^herald (warn|error):/.test(l)).length
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

/** The Markdown report: a title, the table, the fault timeline. */
export function formatReport (input: ReportInput, f: Figures): string {
  const cpus = os.cpus()
  const machine = `${os.availableParallelism?.() ?? cpus.length} CPUs (${cpus[0]?.model.trim() ?? '?'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node.js ${process.version}`
  const lat = [...input.load.latencies].sort((a, b) => a - b)
  const list = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} × ${k}`).join('; ')
  const kinds = (name: string): number => input.faults.filter(x => x.name.startsWith(name)).length
  const rows: Array<[string, string]> = [
    ['broker', input.brokerDescription],
    ['machine', machine],
    ['date', new Date().toISOString().replace(/\.\d+Z$/, 'Z')],
    ['load', `${input.mode} run: ${f.sent} requests at ${input.rate} req/s over at most ${s(input.durationMs)}; worker concurrency ${input.concurrency}`],
    ['outbox', input.outbox],
    ['faults', `${kinds('broker restart')} broker restarts, ${kinds('worker connection cut')} worker connection cut, ${kinds('worker SIGKILL')} worker SIGKILL + restart, ${kinds('service SIGKILL') > 0 ? `${kinds('service SIGKILL')} service SIGKILL + restart while the broker was down, ` : ''}${input.poison.length} poison messages (timeline below)`],
    ['requests sent', String(f.sent)],
    ['answered 2xx', String(f.ok)],
    ['answered 503', String(f.unavailable)],
    ['errors (no answer, or another status)', `${f.errors + f.otherStatus}${f.otherStatus > 0 ? ` (${f.otherStatus} other status)` : ''}`],
    ['2xx latency p50 / p99 / max', `${percentile(lat, 0.5)} / ${percentile(lat, 0.99)} / ${lat.length > 0 ? lat[lat.length - 1] : 0} ms`],
    ['events handled (unique request ids)', String(f.handledUnique)],
    ['lost (2xx, never handled)', String(f.lost.length)],
    ['handled without a 2xx (stored, but the reply was 503 or never came)', String(f.handledWithoutOk)],
    ['duplicates (handled more than once)', f.duplicates === 0 ? '0' : `${f.duplicates} requests (${f.extraDeliveries} extra handlings): ${list(f.duplicateCauses)}`],
    ['dead-lettered', `${f.deadLettered}${f.deadLettered > 0 ? `: ${list(f.deadLetterReasons)}` : ''}`],
    ['poison messages accounted for', `${f.poisonAccounted} of ${input.poison.length}${f.poisonMissing.length > 0 ? ` (missing: ${f.poisonMissing.join(', ')})` : ' (each dead-lettered with its reason)'}`],
    ['dead letters that were not poison', String(f.otherDeadLetters)],
    ['read by the dead-letter handler', `${input.deadRecords.length}${input.secondLevelDeadLetters.length > 0 ? `; ${input.secondLevelDeadLetters.length} it could not decode (not JSON) went on to its own dead-letter destination` : ''}`],
    ['time to drain after the last fault', f.drainMs === undefined ? `not drained within ${s(input.drainTimeoutMs)}` : `${s(f.drainMs)} (every 2xx event sent before the last fault ended was handled by then); the last event was handled ${s(f.tailMs ?? 0)} after the last request`],
    ['Herald log lines at warn or error', `service ${logCount(input.serviceLog)}, worker ${logCount(input.workerLog)}`],
    ['unexpected process exits', input.unexpectedExits.length === 0 ? '0' : `${input.unexpectedExits.length}: ${input.unexpectedExits.join('; ')}`]
  ]
  const t0 = input.load.startedAt
  const out: string[] = []
  out.push(`### Fault harness: ${input.broker}`)
  out.push('')
  out.push('| | |')
  out.push('|---|---|')
  for (const [k, v] of rows) out.push(`| ${cell(k)} | ${cell(v)} |`)
  out.push('')
  out.push(`Timeline (t = seconds since the first request; the load ran until t=${((input.load.lastSentAt - t0) / 1000).toFixed(1)}):`)
  for (const fault of [...input.faults].sort((a, b) => a.startedAt - b.startedAt)) {
    out.push(`- t=${((fault.startedAt - t0) / 1000).toFixed(1)}..${((fault.endedAt - t0) / 1000).toFixed(1)} ${fault.name}: ${fault.detail}`)
  }
  if (f.lost.length > 0) out.push(`\nLost request ids (first 20): ${f.lost.slice(0, 20).join(', ')}`)
  return out.join('\n')
}

/** What the test reads back from a printed report. */
export interface ParsedReport {
  lost: number
  poisonAccounted: number
  poisonSent: number
  ok: number
  sent: number
}

/** Reads the figures the test checks from `formatReport`'s output; undefined when the table is not there. */
export function parseReport (text: string): ParsedReport | undefined {
  const row = (name: string): string | undefined => {
    const line = text.split('\n').find(l => l.startsWith(`| ${name} |`))
    return line?.slice(`| ${name} |`.length).replace(/\|\s*$/, '').trim()
  }
  const lost = row('lost (2xx, never handled)')
  const poison = row('poison messages accounted for')?.match(/^(\d+) of (\d+)/)
  const ok = row('answered 2xx')
  const sent = row('requests sent')
  if (lost === undefined || poison == null || ok === undefined || sent === undefined) return undefined
  return { lost: Number(lost), poisonAccounted: Number(poison[1]), poisonSent: Number(poison[2]), ok: Number(ok), sent: Number(sent) }
}
