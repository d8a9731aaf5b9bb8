import { randomUUID } from 'node:crypto'
import type { ConfirmChannel, Message, MessageProperties, Options } from 'amqplib'
import { BrokerError, ErrorCode } from '../../errors.js'
import { settledWithin } from '../../time.js'
import { brokerClosedError } from '../shared/closed-error.js'
import type { OutgoingMessage } from '../broker.js'
import { checkOutgoing } from '../outgoing-checks.js'
import type { RabbitMqConnection } from './rabbitmq-connection.js'
import { channelClosedError, channelError, isChannelError, rabbitMqReason, replyCode, topologyError, unroutableError } from './rabbitmq-errors.js'
import { encodeHeaders } from './rabbitmq-headers.js'

/** How long `close()` lets confirms of messages already sent arrive before closing the channel. */
const CONFIRM_GRACE_MS = 2_000

/** The properties a message put back on its queue keeps (`headers` and `messageId` are set apart). */
const COPIED_PROPERTIES = ['contentType', 'contentEncoding', 'priority', 'correlationId', 'replyTo', 'expiration', 'timestamp', 'type', 'userId', 'appId'] as const

/** A confirm channel and what is known about the messages sent on it. */
interface PublishChannel {
  readonly channel: ConfirmChannel
  /** `messageId` → the server's reply text, for messages that came back through basic.return. */
  readonly returned: Map<string, string>
  closed: boolean
  /** Why the server closed the channel, when it said. */
  error: unknown
  /** Set while the channel's write buffer is full (flow control): resolves on 'drain' or 'close'. */
  drained: Promise<void> | undefined
}

/** A publish() call not answered yet. */
interface PublishCall {
  /** The channel it last wrote on; undefined before it wrote. */
  pc: PublishChannel | undefined
  /** True while it sends again, one at a time, what a closed channel failed. */
  recovering: boolean
  /** Resolves once the call is answered. */
  readonly done: Promise<void>
}

/**
 * Publishes on one confirm channel: each message is persistent and mandatory, and its
 * result is known once RabbitMQ confirms it (basic.ack), refuses it (basic.nack), or
 * returns it as unroutable. RabbitMQ sends a message's basic.return before its
 * basic.ack, on the same channel, so the return is matched to the confirm by `messageId`.
 * A channel that closes is replaced on the next publish (reconnecting if need be).
 *
 * publish() calls may overlap (the producer keeps several batches in flight): they write
 * in call order on the one channel, and a call never writes while an earlier one is still
 * unanswered on another channel or sending again what a closed channel failed, so the
 * messages reach the exchange in call order.
 */
export class RabbitMqPublisher {
  readonly #connection: RabbitMqConnection
  readonly #exchange: string
  readonly #appId: string
  #live: PublishChannel | undefined
  #opening: Promise<PublishChannel> | undefined
  #closed = false
  /** The publish() calls not answered yet, in call order. */
  readonly #calls: PublishCall[] = []

  constructor (connection: RabbitMqConnection, exchange: string, appId: string) {
    this.#connection = connection
    this.#exchange = exchange
    this.#appId = appId
  }

  /** Opens the connection and the channel and declares the exchange, unless that is done. */
  async ready (): Promise<void> {
    await this.#channel()
  }

  /**
   * Sends the messages in order; resolves with one result each, never `undefined` for a
   * message RabbitMQ did not confirm. A message RabbitMQ can never take (a topic over 255
   * bytes) fails alone before anything is sent. `onConfirmed(i)` is called as soon as
   * RabbitMQ confirmed message `i` (basic.ack, not returned).
   */
  async publish (messages: OutgoingMessage[], onConfirmed?: (index: number) => void): Promise<Array<Error | undefined>> {
    const results: Array<Error | undefined> = messages.map(() => undefined)
    const ready: OutgoingMessage[] = []
    const indexes: number[] = []
    messages.forEach((m, i) => {
      const checked = checkOutgoing('rabbitmq', m)
      if (checked.error !== undefined) results[i] = checked.error
      else {
        ready.push(checked.message)
        indexes.push(i)
      }
    })
    if (ready.length === 0) return results
    let answered!: () => void
    const call: PublishCall = { pc: undefined, recovering: false, done: new Promise<void>(resolve => { answered = resolve }) }
    this.#calls.push(call)
    try {
      const confirmed = onConfirmed === undefined ? undefined : (k: number): void => { onConfirmed(indexes[k]!) }
      const sent = await this.#publishOnChannel(ready, call, confirmed)
      // Alone with one message, the message is what closed the channel (or the channel was lost under it).
      if ((ready.length > 1 || this.#calls.length > 1) && sent.some(isChannelError)) {
        // The server closed the channel over one message (e.g. 406, over max_message_size):
        // that fails every message unconfirmed on it, this call's and other calls'. Once
        // the earlier calls are answered, send those again one at a time, each on a fresh
        // channel: the others go through, the one that causes it fails alone.
        await Promise.all(this.#calls.slice(0, this.#calls.indexOf(call)).map(async c => await c.done))
        call.recovering = true
        for (let k = 0; k < ready.length; k++) {
          if (isChannelError(sent[k])) sent[k] = (await this.#publishOnChannel([ready[k]!], call, confirmed === undefined ? undefined : () => { confirmed(k) }))[0]
        }
      }
      indexes.forEach((i, k) => { results[i] = sent[k] })
      return results
    } finally {
      this.#calls.splice(this.#calls.indexOf(call), 1)
      answered()
    }
  }

  async #publishOnChannel (messages: OutgoingMessage[], call: PublishCall, confirmed: ((k: number) => void) | undefined): Promise<Array<Error | undefined>> {
    let pc: PublishChannel
    for (;;) {
      try {
        pc = await this.#channel()
      } catch (err) {
        const error = err instanceof BrokerError ? err : new BrokerError(`could not open a channel to publish on: ${rabbitMqReason(err, this.#connection.secrets)}`, { cause: err })
        return messages.map(() => error)
      }
      // An earlier call unanswered on another channel, or sending again what its channel
      // failed, will write after this point: wait for it, so these messages go behind its.
      const ahead = this.#calls.slice(0, this.#calls.indexOf(call)).filter(c => c.pc !== pc || c.recovering)
      if (ahead.length === 0) break
      await Promise.all(ahead.map(async c => await c.done))
    }
    call.pc = pc
    // One promise for the batch, not one per message: the results are counted in.
    const results: Array<Error | undefined> = new Array(messages.length)
    let unanswered = messages.length
    let answered!: () => void
    const all = new Promise<void>(resolve => { answered = resolve })
    const answer = (k: number, result: Error | undefined): void => {
      results[k] = result
      if (result === undefined) confirmed?.(k)
      if (--unanswered === 0) answered()
    }
    for (let k = 0; k < messages.length; k++) {
      // Flow control: publish() returned false, so wait for the write buffer to drain.
      while (pc.drained !== undefined) await pc.drained
      if (pc.closed) answer(k, this.#lostError(pc))
      else this.#send(pc, messages[k]!, k, answer)
    }
    await all
    return results
  }

  /** Lets confirms of what was sent arrive (briefly), then closes the channel; what is still unconfirmed fails. */
  async close (): Promise<void> {
    this.#closed = true
    const pc = this.#live ?? await this.#opening?.catch(() => undefined)
    this.#live = undefined
    if (pc === undefined || pc.closed) return
    await settledWithin(pc.channel.waitForConfirms(), CONFIRM_GRACE_MS, { keepAlive: true })
    await pc.channel.close().catch(() => {})
  }

  #send (pc: PublishChannel, message: OutgoingMessage, k: number, answer: (k: number, result: Error | undefined) => void): void {
    this.#write(pc, this.#exchange, message.topic, message.value, {
      contentType: message.headers['content-type'] ?? 'application/json',
      messageId: randomUUID(),
      timestamp: Math.floor(Date.now() / 1000),
      appId: this.#appId,
      headers: encodeHeaders(message.headers, message.key),
      persistent: true,
      mandatory: true
    }, k, answer)
  }

  /**
   * Puts a copy of a consumed message back on its queue (through the default exchange,
   * routing key = the queue), with the same properties and `headers`, persistent and
   * confirmed. Resolves `undefined` once RabbitMQ confirmed it, or the error.
   */
  async putBack (queue: string, content: Buffer, properties: MessageProperties, headers: Record<string, unknown>): Promise<Error | undefined> {
    let pc: PublishChannel
    try {
      pc = await this.#channel()
    } catch (err) {
      return err instanceof Error ? err : new BrokerError(String(err))
    }
    while (pc.drained !== undefined) await pc.drained
    if (pc.closed) return this.#lostError(pc)
    const options: Options.Publish = { headers, messageId: properties.messageId ?? randomUUID(), persistent: true, mandatory: true }
    for (const name of COPIED_PROPERTIES) {
      const value: unknown = properties[name]
      if (value !== undefined && value !== null) (options as Record<string, unknown>)[name] = value
    }
    return await new Promise<Error | undefined>(resolve => { this.#write(pc, '', queue, content, options, 0, (_k, result) => { resolve(result) }) })
  }

  /**
   * Publishes one message (`options` persistent and mandatory, with a `messageId`) and calls
   * `answer(k, …)` once: `undefined` when RabbitMQ confirmed it, or the error.
   */
  #write (pc: PublishChannel, exchange: string, routingKey: string, content: Buffer, options: Options.Publish, k: number, answer: (k: number, result: Error | undefined) => void): void {
    const messageId = options.messageId!
    const destination = (): string => exchange === '' ? `queue "${routingKey}"` : `topic "${routingKey}"`
    try {
      const writable = pc.channel.publish(exchange, routingKey, content, options, (err: unknown) => {
        const returned = pc.returned.size === 0 ? undefined : pc.returned.get(messageId)
        if (err !== null && err !== undefined) {
          pc.returned.delete(messageId)
          answer(k, err instanceof Error && err.message === 'message nacked'
            ? new BrokerError(`RabbitMQ did not take the message to ${destination()} (basic.nack: a queue it routes to could not store it, e.g. one at its max length that rejects publishes)`, { cause: err })
            : this.#lostError(pc))
        } else if (returned !== undefined) {
          pc.returned.delete(messageId)
          answer(k, exchange === '' ? new BrokerError(`the queue "${routingKey}" does not exist (RabbitMQ: ${returned})`, { code: ErrorCode.Unroutable, retriable: false }) : unroutableError(routingKey, exchange, returned))
        } else {
          answer(k, undefined)
        }
      })
      if (!writable) this.#waitForDrain(pc)
    } catch (err) {
      // amqplib throws when the channel is closing or closed, when the headers do not fit
      // a frame (RangeError), or when a field cannot be encoded ("is the wrong type": a
      // TypeError): those last two are this message's, and sending it again cannot help.
      answer(k, pc.closed
        ? this.#lostError(pc)
        : new BrokerError(`could not send the message to ${destination()}: ${rabbitMqReason(err, this.#connection.secrets)}`, { retriable: !(err instanceof RangeError || err instanceof TypeError), cause: err }))
    }
  }

  #lostError (pc: PublishChannel): BrokerError {
    if (replyCode(pc.error) !== undefined) return channelError(pc.error, this.#connection.secrets)
    return channelClosedError('RabbitMQ did not confirm the message: the publishing channel closed', pc.error ?? 'the channel or its connection closed before the confirm', this.#connection.secrets)
  }

  #waitForDrain (pc: PublishChannel): void {
    pc.drained ??= new Promise<void>((resolve) => {
      const done = (): void => {
        pc.channel.off('drain', done)
        pc.channel.off('close', done)
        pc.drained = undefined
        resolve()
      }
      pc.channel.on('drain', done)
      pc.channel.on('close', done)
    })
  }

  async #channel (): Promise<PublishChannel> {
    if (this.#closed) throw brokerClosedError('RabbitMQ')
    if (this.#live !== undefined && !this.#live.closed) return this.#live
    this.#opening ??= this.#open().finally(() => { this.#opening = undefined })
    return await this.#opening
  }

  async #open (): Promise<PublishChannel> {
    const channel = await this.#connection.confirmChannel()
    const pc: PublishChannel = { channel, returned: new Map(), closed: false, error: undefined, drained: undefined }
    channel.on('error', (err: unknown) => { pc.error = err })
    channel.on('close', () => {
      pc.closed = true
      pc.returned.clear()
      if (this.#live === pc) this.#live = undefined
    })
    channel.on('return', (msg: Message) => {
      const id: unknown = msg.properties.messageId
      const replyText = (msg.fields as { replyText?: unknown }).replyText
      if (typeof id === 'string') pc.returned.set(id, typeof replyText === 'string' ? replyText : 'NO_ROUTE')
    })
    try {
      await channel.assertExchange(this.#exchange, 'topic', { durable: true })
    } catch (err) {
      await channel.close().catch(() => {})
      throw topologyError(`could not declare the topic exchange "${this.#exchange}" at ${this.#connection.address}`, err, this.#connection.secrets)
    }
    if (this.#closed) {
      await channel.close().catch(() => {})
      throw brokerClosedError('RabbitMQ')
    }
    this.#live = pc
    return pc
  }
}
