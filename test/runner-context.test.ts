// What a handler finds in its ctx (signal, logger) on the embedded broker: the signal aborts
// with an error of Herald's hierarchy on a timeout or a forced shutdown, the logger carries
// the message's fields, and neither costs anything to a handler that does not use them.
import { expect } from 'chai'
import {
  createMessaging, ErrorCode, HandlerTimeoutError, HeraldError, messageHandler, ShutdownAbortError, startConsumers,
  type Context, type Logger, type Messaging
} from '../lib/index.js'
import { RecordingLogger } from './support/recording-logger.js'
import { eventually, randomName } from './helpers.js'

describe('the handler context', function () {
  let messaging: Messaging | undefined
  afterEach(async function () {
    await messaging?.close()
    messaging = undefined
  })

  it('on a timeout, ctx.signal aborts with a HandlerTimeoutError (code HERALD_HANDLER_TIMEOUT), also when the handler reads the signal only after the timeout', async function () {
    const topic = randomName('ctx-timeout')
    messaging = createMessaging({ broker: 'memory', logger: false })
    const reasons: unknown[] = []
    const lateReads: Array<{ aborted: boolean, reason: unknown }> = []
    const runner = await startConsumers({
      messaging,
      signals: false,
      handlers: [
        messageHandler({ topic, group: 'g', timeout: 50, maxRetries: 0, deadLetter: false }, async (data: { late?: boolean }, ctx) => {
          if (data.late === true) {
            // Reads the signal for the first time after the timeout fired.
            await new Promise(resolve => setTimeout(resolve, 120))
            lateReads.push({ aborted: ctx.signal.aborted, reason: ctx.signal.reason })
            return
          }
          await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
          reasons.push(ctx.signal.reason)
        })
      ]
    })
    await messaging.publishEvent('slow', {}, { topic })
    await messaging.publishEvent('slow', { late: true }, { topic })
    await eventually(() => reasons.length === 1 && lateReads.length === 1, 'both handlers to see the timeout')
    expect(reasons[0]).to.be.instanceOf(HandlerTimeoutError)
    expect(reasons[0]).to.be.instanceOf(HeraldError)
    expect((reasons[0] as HeraldError).code).to.equal(ErrorCode.HandlerTimeout)
    expect(lateReads[0]!.aborted).to.equal(true)
    expect(lateReads[0]!.reason).to.be.instanceOf(HandlerTimeoutError)
    await runner.stop()
  })

  it('on a forced shutdown, ctx.signal aborts with a ShutdownAbortError (code HERALD_SHUTDOWN) and the message is released, not acknowledged', async function () {
    const topic = randomName('ctx-shutdown')
    messaging = createMessaging({ broker: 'memory', logger: false })
    let started = false
    let reason: unknown
    const runner = await startConsumers({
      messaging,
      signals: false,
      shutdownTimeout: 50,
      handlers: [
        messageHandler({ topic, group: 'g' }, async (_data, ctx) => {
          started = true
          await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
          reason = ctx.signal.reason
        })
      ]
    })
    await messaging.publishEvent('stuck', {}, { topic })
    await eventually(() => started, 'the handler to start')
    await runner.stop()
    expect(reason).to.be.instanceOf(ShutdownAbortError)
    expect((reason as HeraldError).code).to.equal(ErrorCode.ShutdownAbort)
    // Released: a new consumer of the group gets it again.
    const again: unknown[] = []
    const second = await startConsumers({ messaging, signals: false, handlers: [messageHandler({ topic, group: 'g' }, async (data) => { again.push(data) })] })
    await eventually(() => again.length === 1, 'the released message to be delivered again')
    await second.stop()
  })

  it('ctx.logger carries the topic, the message id and the attempt; a handler that never uses it makes no child logger per message', async function () {
    const topic = randomName('ctx-logger')
    let children = 0
    const records = new RecordingLogger()
    const counting: Logger = {
      debug: (o, m) => records.debug(o, m),
      info: (o, m) => records.info(o, m),
      warn: (o, m) => records.warn(o, m),
      error: (o, m) => records.error(o, m),
      child: (bindings) => { children++; return countingChild(records.child(bindings)) }
    }
    function countingChild (inner: Logger): Logger {
      return { debug: inner.debug.bind(inner), info: inner.info.bind(inner), warn: inner.warn.bind(inner), error: inner.error.bind(inner), child: (b) => { children++; return countingChild(inner.child!(b)) } }
    }
    messaging = createMessaging({ broker: 'memory', logger: counting })
    const seen: number[] = []
    const runner = await startConsumers({
      messaging,
      signals: false,
      handlers: [
        messageHandler({ topic, group: 'g' }, async (data: { n: number }, ctx: Context) => {
          if (data.n === 0) ctx.logger.info({ n: data.n }, 'handled with its logger')
          seen.push(data.n)
        })
      ]
    })
    await messaging.publishEvent('one', { n: 0 }, { topic })
    await eventually(() => seen.length === 1, 'the first message')
    const before = children
    for (let n = 1; n <= 50; n++) await messaging.publishEvent('one', { n }, { topic })
    await eventually(() => seen.length === 51, 'every message')
    expect(children - before, 'child loggers made for 50 messages whose handler does not log').to.equal(0)
    const line = records.records.find(r => r.msg === 'handled with its logger')
    expect(line?.fields).to.include({ topic, attempt: 1 })
    expect(line?.fields.messageId).to.be.a('string').and.not.equal('')
    await runner.stop()
  })
})
