import { BROKER_KINDS, type Broker, type BrokerKind, type OutgoingMessage } from './brokers/broker.js'
import { headersAreText, normalizeHeaders, sizeProblem, topicProblem } from './brokers/outgoing-checks.js'
import { BrokerError, ErrorCode, PublishError, isRetriable, type HeraldError } from './errors.js'
import { createEvent, encodeJson, eventHeaders, HEADER_CONTENT_TYPE, HEADER_EVENT_ID, JSON_CONTENT_TYPE, type Event, type EventData } from './event.js'
import { observePublish } from './observability/observe.js'
import type { ProducerSpool } from './outbox/outbox.js'

export interface SendOptions {
  /** The message key: messages with the same key keep their order (Kafka partition). */
  key?: string
  /**
   * Extra headers, string values. `undefined` and `null` values are left out, numbers and
   * booleans are sent as text; any other value fails the send (`HERALD_INVALID_HEADER`).
   */
  headers?: Record<string, string>
}

export interface PublishOptions extends SendOptions {
  /** Where the event goes; default the messaging's `defaultTopic`. */
  topic?: string
}

export interface ProducerSettings {
  /** The broker sends go to: a built-in broker's rules for topic names are checked before a send joins a batch. */
  broker?: BrokerKind | (string & {})
  source: string
  defaultTopic: string
  /** How long a send may wait for the broker's acknowledgement, in ms. */
  publishTimeout: number
  /** How long to wait for more sends before sending a batch, in ms (0: the batch is what arrived in the same tick). */
  linger: number
  /** The most messages in one batch. */
  maxBatchSize: number
  /** The largest message `send` and `publishEvent` take, in bytes: body, key and header names and values. */
  maxMessageBytes: number
  /** False: no producer spans, no trace context in the headers, no OTel metrics (the `tracing` option). */
  tracing?: boolean
}

interface Pending {
  readonly message: OutgoingMessage
  readonly eventName: string | undefined
  /** Answered: acknowledged, failed, or handed to the spool (which answers it then). */
  settled: boolean
  /** The broker acknowledged it before answering its whole batch (`onAcknowledged`). */
  acknowledged: boolean
  /** When it times out (`performance.now()` ms): every send has the same publishTimeout, so deadlines follow the order of sends. */
  readonly deadline: number
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

interface Batch {
  readonly sends: Pending[]
  /** The broker's answer, once it came: batches are answered to their sends in order. */
  results: Array<Error | undefined> | undefined
  /** How many of its sends, from the first, were answered before the broker answered the batch. */
  answered: number
}

/**
 * Sends messages and events. Every send resolves only once the broker acknowledged it,
 * and rejects with a `PublishError` otherwise. Sends made while a batch is on its way are
 * coalesced into the next batch (one request for many HTTP handlers). Batches go one at a
 * time, or up to the broker's `maxPublishesInFlight` at once when its adapter keeps the
 * order of concurrent publish() calls; either way sends keep their order, and are answered
 * in it.
 *
 * With an outbox, a send the broker does not acknowledge within `publishTimeout`, or fails
 * with a retriable error, resolves once it is stored in the outbox instead; so do the sends
 * queued behind it, and every send made while the outbox holds anything (it goes behind
 * the others: order is kept). A send that can never succeed still rejects at once, alone:
 * a topic name or a header value the broker cannot take is refused before the send joins a
 * batch; unroutable, too large, a refused credential (`retriable` false) when the broker says so.
 */
export class Producer {
  readonly #broker: () => Promise<Broker>
  readonly #settings: ProducerSettings
  readonly #spool: ProducerSpool | undefined
  /** The built-in broker whose rules apply; undefined for an adapter of the user's own. */
  readonly #kind: BrokerKind | undefined
  #queue: Pending[] = []
  /** The batches handed to the broker and not yet answered to their sends, oldest first. */
  #inFlight: Batch[] = []
  /** Of `#inFlight`, those the broker has not answered yet. */
  #publishing = 0
  /** The broker once connected: batches are then handed to it synchronously, in send order. */
  #ready: Broker | undefined
  /** Cancels the scheduled drain, when one is scheduled. */
  #scheduled: (() => void) | undefined
  /** One timer for every send's publishTimeout, armed for the oldest unanswered one (a timer per send costs every send). */
  #timer: NodeJS.Timeout | undefined
  /** Topics the broker's rules already accepted: a name checked once is good for good. */
  readonly #goodTopics = new Set<string>()
  /** Every send not yet answered, for `flush`. */
  readonly #unanswered = new Set<Promise<void>>()
  #closed = false

  constructor (broker: () => Promise<Broker>, settings: ProducerSettings, spool?: ProducerSpool) {
    this.#broker = broker
    this.#settings = settings
    this.#spool = spool
    this.#kind = (BROKER_KINDS as readonly string[]).includes(settings.broker ?? '') ? settings.broker as BrokerKind : undefined
  }

  /**
   * Sends `message` as JSON, unwrapped, to `topic`. Resolves once the broker has it.
   *
   * @example
   * await getProducer().send('audit', { action: 'login', user: 7 }, { key: '7' })
   */
  async send (topic: string, message: unknown, options: SendOptions = {}): Promise<void> {
    const value = encodeJson(message)
    const outgoing: OutgoingMessage = { topic, value, key: options.key, headers: { [HEADER_CONTENT_TYPE]: JSON_CONTENT_TYPE, ...options.headers } }
    await observePublish({ broker: this.#settings.broker ?? 'memory', message: outgoing, eventId: undefined, tracing: this.#settings.tracing !== false }, async () => { this.#checkSize(outgoing, undefined); await this.sendRaw(outgoing) })
  }

  /**
   * Publishes an event envelope `{id, name, data, timestamp, source}` and resolves with
   * it once the broker acknowledged it.
   *
   * @example
   * const event = await messaging.producer.publishEvent('user.created', { id: 1 }, { topic: 'user-events', key: '1' })
   */
  async publishEvent<T> (name: string, data: T, options: PublishOptions = {}): Promise<Event<EventData<T>>> {
    if (typeof name !== 'string' || name === '') throw new TypeError('publishEvent: the event name must be a non-empty string')
    const event = createEvent(name, data, this.#settings.source)
    const topic = options.topic ?? this.#settings.defaultTopic
    const headers = options.headers === undefined ? eventHeaders(event) : { ...options.headers, ...eventHeaders(event) }
    const outgoing: OutgoingMessage = { topic, value: encodeJson(event), key: options.key, headers }
    await observePublish({ broker: this.#settings.broker ?? 'memory', message: outgoing, eventId: event.id, tracing: this.#settings.tracing !== false }, async () => { this.#checkSize(outgoing, name); await this.sendRaw(outgoing, name) })
    return event
  }

  /**
   * Sends an event message built elsewhere (a route's event, whose size was checked when it
   * was built) as `publishEvent` would: traced, with the trace context in its headers.
   */
  async sendEvent (message: OutgoingMessage, eventName: string): Promise<void> {
    await observePublish({ broker: this.#settings.broker ?? 'memory', message, eventId: message.headers[HEADER_EVENT_ID], tracing: this.#settings.tracing !== false }, async () => { await this.sendRaw(message, eventName) })
  }

  /**
   * Sends a message exactly as given (body bytes and headers). `maxMessageBytes` is not
   * checked here: dead letters use it (the broker carried the message once already), and
   * route events, whose size was checked when they were built.
   */
  sendRaw (raw: OutgoingMessage, eventName?: string): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError(raw.topic, eventName, new BrokerError('the producer is closed', { retriable: false })))
    // Checked before it joins a batch or the outbox: a message the broker can never take
    // fails alone and at once, rather than failing its batch-mates or blocking the outbox.
    const checked = this.#check(raw)
    if (checked instanceof Error) return Promise.reject(new PublishError(raw.topic, eventName, checked))
    const message = checked
    const answered = this.#spool?.active === true
      // The outbox holds earlier sends: this one goes behind them, not past them.
      ? this.#spool.append(message).catch((err: unknown) => { throw new PublishError(message.topic, eventName, err) })
      : new Promise<void>((resolve, reject) => {
        this.#queue.push({ message, eventName, settled: false, acknowledged: false, deadline: performance.now() + this.#settings.publishTimeout, resolve, reject })
        if (this.#timer === undefined) this.#arm()
        this.#schedule()
      })
    this.#unanswered.add(answered)
    const forget = (): void => { this.#unanswered.delete(answered) }
    answered.then(forget, forget)
    return answered
  }

  /**
   * The message as the broker takes it (header values as text), or why it never will: a
   * topic name the broker refuses, a header value that is not text. Checked once per send.
   */
  #check (message: OutgoingMessage): OutgoingMessage | HeraldError {
    if (!this.#goodTopics.has(message.topic)) {
      const problem = topicProblem(this.#kind ?? 'memory', message.topic)
      if (problem !== undefined) return problem
      // Bounded: a service that invents topic names keeps checking them, at worst.
      if (this.#goodTopics.size >= 10_000) this.#goodTopics.clear()
      this.#goodTopics.add(message.topic)
    }
    if (headersAreText(message.headers)) return message
    try {
      return { ...message, headers: normalizeHeaders(message.headers) }
    } catch (err) {
      return err as HeraldError
    }
  }

  /** Arms the publishTimeout timer for the oldest unanswered send, if any. */
  #arm (): void {
    const oldest = this.#unansweredSends().find(p => !p.settled)
    if (oldest === undefined) return
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, oldest.deadline - performance.now()))
    this.#timer.unref()
  }

  /** Times out every send past its deadline, oldest first, then waits for the next one. */
  #expire (): void {
    this.#timer = undefined
    const now = performance.now()
    for (const pending of this.#unansweredSends()) {
      if (pending.settled) continue
      if (pending.deadline > now) break
      this.#timedOut(pending)
    }
    this.#arm()
  }

  /** The sends handed to the broker (oldest batch first), then the queued ones: send order. */
  #unansweredSends (): Pending[] {
    return [...this.#inFlight.flatMap(b => b.sends), ...this.#queue]
  }

  /** How many batches may be on their way at once: the broker's word, 1 until it is known. */
  #maxPublishes (): number {
    const n = this.#ready?.maxPublishesInFlight
    return n !== undefined && Number.isInteger(n) && n > 1 ? n : 1
  }

  /** Fails a send at once when its message is over `maxMessageBytes`: no broker would take it, so neither does the outbox. */
  #checkSize (message: OutgoingMessage, eventName: string | undefined): void {
    const tooLarge = sizeProblem(message, this.#settings.maxMessageBytes)
    if (tooLarge !== undefined) throw new PublishError(message.topic, eventName, tooLarge)
  }

  #settle (pending: Pending, err?: Error): void {
    if (pending.settled) return
    pending.settled = true
    if (err === undefined) pending.resolve()
    else pending.reject(err)
  }

  #timedOut (pending: Pending): void {
    if (pending.settled) return
    const reason = new BrokerError(`the broker did not acknowledge within publishTimeout (${this.#settings.publishTimeout} ms)`, { code: ErrorCode.PublishTimeout })
    if (this.#spool !== undefined) this.#divert(reason)
    else this.#settle(pending, new PublishError(pending.message.topic, pending.eventName, reason))
  }

  /**
   * Hands every unanswered send, in order (the batches on their way, oldest first, then
   * the queue), to the outbox. A batch on its way may still reach the broker: then the
   * relay sends it a second time (at least once), never a message less. `first`: the
   * sends of a batch just answered, older than every other.
   */
  #divert (reason: Error, first: Pending[] = []): void {
    const spool = this.#spool!
    this.#scheduled?.()
    this.#scheduled = undefined
    const sends = [...first, ...this.#unansweredSends()]
    this.#queue = []
    for (const pending of sends) {
      if (pending.settled) continue
      pending.settled = true
      spool.append(pending.message, reason).then(pending.resolve, (err: unknown) => {
        pending.reject(new PublishError(pending.message.topic, pending.eventName, err))
      })
    }
  }

  #schedule (): void {
    if (this.#publishing >= this.#maxPublishes() || this.#scheduled !== undefined) return
    const run = (): void => { this.#scheduled = undefined; this.#drain() }
    if (this.#settings.linger > 0 && this.#queue.length < this.#settings.maxBatchSize) {
      const timer = setTimeout(run, this.#settings.linger)
      this.#scheduled = () => clearTimeout(timer)
    } else {
      // Wait for the sends of the current tick to queue up, then send them together.
      const immediate = setImmediate(run)
      this.#scheduled = () => clearImmediate(immediate)
    }
  }

  #drain (): void {
    while (this.#queue.length > 0 && this.#publishing < this.#maxPublishes()) {
      // A send that timed out before its turn was answered already (a 503): it is not sent after all.
      const sends = this.#queue.splice(0, this.#settings.maxBatchSize).filter(p => !p.settled)
      if (sends.length === 0) continue
      const batch: Batch = { sends, results: undefined, answered: 0 }
      this.#inFlight.push(batch)
      this.#publishing++
      void this.#publish(batch).then(results => {
        batch.results = results
        this.#publishing--
        this.#answer()
        if (this.#queue.length > 0) this.#drain()
      })
    }
  }

  /** The broker's answer for each message of the batch, or the error that stopped the batch. */
  async #publish (batch: Batch): Promise<Array<Error | undefined>> {
    const messages = batch.sends.map(p => p.message)
    try {
      // Once connected, no await comes first: publish() is called in queue order.
      this.#ready ??= await this.#broker()
      // A send acknowledged early is answered then, not with its batch: its caller sends again sooner.
      return await this.#ready.publish(messages, (i) => {
        if (batch.sends[i] !== undefined) batch.sends[i].acknowledged = true
        if (batch === this.#inFlight[0]) this.#answer()
      })
    } catch (err) {
      return messages.map(() => err as Error)
    }
  }

  /** Answers the sends of the batches the broker answered, oldest first, then those of the next acknowledged early, in order. */
  #answer (): void {
    for (let head = this.#inFlight[0]; head !== undefined; head = this.#inFlight[0]) {
      if (head.results === undefined) {
        for (let p = head.sends[head.answered]; p !== undefined && (p.acknowledged || p.settled); p = head.sends[++head.answered]) this.#settle(p)
        return
      }
      this.#inFlight.shift()
      const { sends, results } = head
      let retry: Error | undefined
      sends.forEach((p, i) => {
        // Timed out and handed to the outbox meanwhile: the outbox answers it.
        if (p.settled) return
        const err = i < results.length ? results[i] : new BrokerError('the broker gave no answer for this message')
        if (err === undefined) this.#settle(p)
        else if (this.#spool !== undefined && isRetriable(err)) retry ??= err
        else this.#settle(p, new PublishError(p.message.topic, p.eventName, err))
      })
      // What is left unanswered of the batch failed for a reason that may pass: the outbox
      // keeps it, and every send behind it (the later batches on their way too), in order.
      if (retry !== undefined) this.#divert(retry, sends)
    }
  }

  /** Resolves once every send made so far has been answered (acknowledged, stored in the outbox, or failed). */
  async flush (): Promise<void> {
    while (this.#unanswered.size > 0) {
      if (this.#scheduled !== undefined && this.#publishing < this.#maxPublishes()) {
        this.#scheduled()
        this.#scheduled = undefined
        this.#drain()
      }
      await Promise.allSettled([...this.#unanswered])
    }
  }

  /** Flushes, then refuses further sends. */
  async close (): Promise<void> {
    await this.flush()
    this.#closed = true
  }
}
