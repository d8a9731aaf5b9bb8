/**
 * The instrumentation hub: named moments of a message's life (`publish`, a consumed
 * message, each attempt, its dead letter) that tracing and metrics subscribe to. The
 * producer and the runner call it at a few places; with nothing subscribed every call is
 * one boolean check, and the scopes handed back do nothing.
 */
import type { BrokerKind, Delivery, OutgoingMessage } from '../brokers/broker.js'
import { secondsSince } from '../time.js'

/** How a consumed message (or one attempt at it) ended. */
export type ConsumeOutcome = 'ack' | 'retry' | 'dead_letter' | 'skipped' | 'released'

export interface PublishInfo {
  readonly broker: BrokerKind | (string & {})
  /** The message about to be sent: a subscriber may add headers (the trace context). */
  readonly message: OutgoingMessage
  /** The event id, for an event envelope. */
  readonly eventId: string | undefined
  /** False when the Messaging instance was created with `tracing: false`. */
  readonly tracing: boolean
}

export interface ConsumeInfo {
  readonly broker: BrokerKind | (string & {})
  readonly group: string
  readonly delivery: Delivery
  readonly tracing: boolean
}

/** One publish, from the call to its answer (acknowledged, stored in the outbox, or failed). */
export interface PublishScope {
  end(error?: unknown): void
}

/** One attempt of a handler at a message. */
export interface AttemptScope {
  /** Runs `fn` with this attempt as the active context (the handler's own spans nest under it). */
  run<T>(fn: () => T): T
  end(outcome: ConsumeOutcome, error?: unknown): void
}

/** One consumed message, from its delivery to its settlement. */
export interface MessageScope {
  attempt(attempt: number): AttemptScope
  /** Sends its dead letter with `send`, as an operation of its own. */
  deadLetter(destination: string, send: () => Promise<void>): Promise<void>
  /** The message is settled (or given back). Only the first call counts. */
  end(outcome: ConsumeOutcome): void
}

/** What tracing and metrics implement; each part is optional. */
export interface Subscriber {
  publish?(info: PublishInfo): PublishScope | undefined
  consume?(info: ConsumeInfo): MessageScope | undefined
}

const subscribers = new Set<Subscriber>()
let active = false

/** Adds a subscriber; returns what removes it. */
export function subscribe (subscriber: Subscriber): () => void {
  subscribers.add(subscriber)
  active = true
  return () => {
    subscribers.delete(subscriber)
    active = subscribers.size > 0
  }
}

const NOOP_ATTEMPT: AttemptScope = { run: fn => fn(), end: () => {} }
const NOOP_MESSAGE: MessageScope = { attempt: () => NOOP_ATTEMPT, deadLetter: async (_destination, send) => await send(), end: () => {} }

/**
 * Publishes `message` with `send`, observed: subscribers start before it (so the trace
 * context is in the headers before the message can reach the outbox) and end with its answer.
 */
export async function observePublish (info: PublishInfo, send: () => Promise<void>): Promise<void> {
  if (!active) return await send()
  const scopes: PublishScope[] = []
  for (const s of subscribers) {
    const scope = s.publish?.(info)
    if (scope !== undefined) scopes.push(scope)
  }
  try {
    await send()
  } catch (err) {
    for (const scope of scopes) scope.end(err)
    throw err
  }
  for (const scope of scopes) scope.end()
}

/** Starts observing a consumed message. */
export function observeConsume (info: ConsumeInfo): MessageScope {
  if (!active) return NOOP_MESSAGE
  const scopes: MessageScope[] = []
  for (const s of subscribers) {
    const scope = s.consume?.(info)
    if (scope !== undefined) scopes.push(scope)
  }
  if (scopes.length === 0) return NOOP_MESSAGE
  if (scopes.length === 1) return scopes[0]!
  return {
    attempt: (n) => {
      const attempts = scopes.map(s => s.attempt(n))
      return {
        run: (fn) => attempts.reduceRight<() => any>((inner, a) => () => a.run(inner), fn)(),
        end: (outcome, error) => { for (const a of attempts) a.end(outcome, error) }
      }
    },
    deadLetter: (destination, send) => scopes.reduceRight<() => Promise<void>>((inner, s) => () => s.deadLetter(destination, inner), send)(),
    end: (outcome) => { for (const s of scopes) s.end(outcome) }
  }
}

/**
 * The scope a metrics subscriber gives a consumed message: `attempt` is called with each
 * attempt's duration in seconds and outcome, `settled` once with the message's outcome.
 */
export function measuredMessage (attempt: (seconds: number, outcome: ConsumeOutcome, error: unknown) => void, settled: (outcome: ConsumeOutcome) => void): MessageScope {
  let ended = false
  return {
    attempt: () => {
      const start = process.hrtime.bigint()
      return { run: fn => fn(), end: (outcome, error) => attempt(secondsSince(start), outcome, error) }
    },
    deadLetter: async (_destination, send) => await send(),
    end: (outcome) => {
      if (ended) return
      ended = true
      settled(outcome)
    }
  }
}
