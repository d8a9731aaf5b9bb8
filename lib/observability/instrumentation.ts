/**
 * The instrumentation hub: named moments of a message's life (`publish`, a consumed
 * message, each attempt, its dead letter) that tracing and metrics subscribe to. The
 * producer and the runner call it at a few places; with nothing subscribed every call is
 * one boolean check, and the scopes handed back do nothing.
 */
import type { BrokerKind, Delivery, OutgoingMessage } from '../brokers/broker.js'

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
export function observePublish (info: PublishInfo, send: () => Promise<void>): Promise<void> {
  if (!active) return send()
  const scopes = opened(s => s.publish?.(info))
  if (scopes === undefined) return send()
  return send().then(() => {
    for (const scope of scopes) scope.end()
  }, (err: unknown) => {
    for (const scope of scopes) scope.end(err)
    throw err
  })
}

/** Starts observing a consumed message. */
export function observeConsume (info: ConsumeInfo): MessageScope {
  if (!active) return NOOP_MESSAGE
  const scopes = opened(s => s.consume?.(info))
  return scopes === undefined ? NOOP_MESSAGE : scopes.length === 1 ? scopes[0]! : new Messages(scopes)
}

/** The scopes the subscribers open for one message, in subscription order (undefined: none opened one). */
function opened<T> (open: (s: Subscriber) => T | undefined): T[] | undefined {
  let scopes: T[] | undefined
  for (const s of subscribers) {
    const scope = open(s)
    if (scope !== undefined) (scopes ??= []).push(scope)
  }
  return scopes
}

/** What an attempt scope that does not wrap the handler has as `run`: the hub then calls the handler without it. */
export const runDirectly = <T>(fn: () => T): T => fn()

/** `make(outcome)` for each outcome: what a metrics subscriber records per outcome, built once. */
export function perOutcome<T> (make: (outcome: ConsumeOutcome) => T): Record<ConsumeOutcome, T> {
  return { ack: make('ack'), retry: make('retry'), dead_letter: make('dead_letter'), skipped: make('skipped'), released: make('released') }
}

/** The scopes of several subscribers as one: the attempts that wrap the handler nest, the first outermost. */
class Messages implements MessageScope {
  constructor (private readonly scopes: MessageScope[]) {}

  attempt (n: number): AttemptScope {
    return new Attempts(this.scopes.map(s => s.attempt(n)))
  }

  async deadLetter (destination: string, send: () => Promise<void>, i = 0): Promise<void> {
    if (i === this.scopes.length) return await send()
    await this.scopes[i]!.deadLetter(destination, async () => await this.deadLetter(destination, send, i + 1))
  }

  end (outcome: ConsumeOutcome): void {
    for (const s of this.scopes) s.end(outcome)
  }
}

class Attempts implements AttemptScope {
  constructor (private readonly attempts: AttemptScope[]) {}

  run<T> (fn: () => T, from = 0): T {
    let i = from
    while (i < this.attempts.length && this.attempts[i]!.run === runDirectly) i++
    return i === this.attempts.length ? fn() : this.attempts[i]!.run(() => this.run(fn, i + 1))
  }

  end (outcome: ConsumeOutcome, error?: unknown): void {
    for (const a of this.attempts) a.end(outcome, error)
  }
}

/** Seconds since `start`, a `performance.now()` reading (a number: nothing allocated, unlike `hrtime.bigint()`). */
export const secondsSince = (start: number): number => (performance.now() - start) / 1000

class MeasuredAttempt implements AttemptScope {
  start = 0
  readonly run = runDirectly
  constructor (private readonly message: MeasuredMessage) {}

  end (outcome: ConsumeOutcome, error?: unknown): void {
    this.message.attempted(secondsSince(this.start), outcome, error)
  }
}

/**
 * The scope a metrics subscriber gives a consumed message: `attempted` is called with each
 * attempt's duration in seconds and outcome, `settled` once with the message's outcome.
 * Its attempts, which run one after the other, share one attempt scope.
 */
export abstract class MeasuredMessage implements MessageScope {
  #attempt: MeasuredAttempt | undefined
  #ended = false

  abstract attempted (seconds: number, outcome: ConsumeOutcome, error: unknown): void
  abstract settled (outcome: ConsumeOutcome): void

  attempt (): AttemptScope {
    const attempt = this.#attempt ??= new MeasuredAttempt(this)
    attempt.start = performance.now()
    return attempt
  }

  async deadLetter (_destination: string, send: () => Promise<void>): Promise<void> {
    await send()
  }

  end (outcome: ConsumeOutcome): void {
    if (this.#ended) return
    this.#ended = true
    this.settled(outcome)
  }
}

/**
 * A value per tuple of up to three strings (topic, group, broker…), made once by `make`:
 * what metrics subscribers build per message (attribute sets, labelled children) is built
 * once per tuple and reused. Only for bounded values, as metric labels are.
 */
export class TupleCache<V> {
  readonly #values = new Map<string, Map<string, Map<string, V>>>()
  readonly #make: (a: string, b: string, c: string) => V

  constructor (make: (a: string, b: string, c: string) => V) {
    this.#make = make
  }

  get (a: string, b = '', c = ''): V {
    let byA = this.#values.get(a)
    if (byA === undefined) this.#values.set(a, byA = new Map())
    let byB = byA.get(b)
    if (byB === undefined) byA.set(b, byB = new Map())
    let value = byB.get(c)
    if (value === undefined) byB.set(c, value = this.#make(a, b, c))
    return value
  }
}
