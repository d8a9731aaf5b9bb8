import { expect } from 'chai'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { FormatRegistry, Type } from '@sinclair/typebox'
import {
  consumer, createMessaging, HandlerError, messageHandler, onEvent, startConsumers,
  type Messaging, type Runner, type StartConsumersOptions
} from '../lib/index.js'
import { definitionOf } from '../lib/handlers/decorators.js'
import { eventually, randomName } from './helpers.js'

const LIB_URL = pathToFileURL(join(fileURLToPath(new URL('..', import.meta.url)), 'lib/index.ts')).href

describe('startConsumers start-up rules', function () {
  const open: Array<Messaging | Runner> = []
  const memory = (): Messaging => {
    const m = createMessaging({ broker: 'memory', logger: false, source: 'startup-test' })
    open.push(m)
    return m
  }
  const start = async (options: StartConsumersOptions): Promise<Runner> => {
    const runner = await startConsumers({ signals: false, ...options })
    open.push(runner)
    return runner
  }
  const rejection = async (promise: Promise<unknown>): Promise<Error> => {
    try {
      await promise
    } catch (err) {
      return err as Error
    }
    throw new Error('expected a rejection')
  }

  afterEach(async function () {
    for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
  })

  describe('schema formats', function () {
    it('a schema using a format nobody registered fails startConsumers(), naming the handler, the schema path, the format and how to register it', async function () {
      const topic = randomName()
      const schema = Type.Object({ contact: Type.Object({ phone: Type.String({ format: 'e164-phone' }) }) })
      const err = await rejection(start({ messaging: memory(), handlers: [messageHandler({ topic, schema }, async function savePhone () {})] }))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.match(/^handler "savePhone" \(handlers\[0\]\): the schema uses the string format "e164-phone" \(at properties\.contact\.properties\.phone\), which is not registered/)
      expect(err.message).to.contain('FormatRegistry.Set("e164-phone"')
    })

    it('a format the application registered is accepted', async function () {
      FormatRegistry.Set('order-code', value => /^ORD-\d+$/.test(value))
      const topic = randomName()
      const runner = await start({ messaging: memory(), handlers: [messageHandler({ topic, schema: Type.String({ format: 'order-code' }) }, async function takeOrder () {})] })
      expect(runner.consumers.map(c => c.name)).to.deep.equal(['takeOrder'])
    })
  })

  describe('one topic and group per messaging instance', function () {
    it('a second startConsumers() on the same instance consuming the same topic and group is refused, naming both handlers; after stop() it may', async function () {
      const m = memory()
      const topic = randomName()
      const first = await start({ messaging: m, group: 'billing', handlers: [messageHandler({ topic }, async function chargeCard () {})] })
      const err = await rejection(start({ messaging: m, group: 'billing', handlers: [messageHandler({ topic }, async function refundCard () {})] }))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.equal(`handler "refundCard" (handlers[0]) would consume topic "${topic}" in group "billing", which handler "chargeCard" (handlers[0]) of another running startConsumers() on this messaging instance already consumes (the two would split its messages); stop that runner first, give one of them another group, or start both from one startConsumers() call`)
      // Another group is fine.
      await start({ messaging: m, group: 'audit', handlers: [messageHandler({ topic }, async function audit () {})] })
      await first.stop()
      const again = await start({ messaging: m, group: 'billing', handlers: [messageHandler({ topic }, async function refundCard () {})] })
      expect(again.consumers.map(c => c.name)).to.deep.equal(['refundCard'])
    })

    it('two unnamed handlers of one topic and group loaded from a folder are named by file and export', async function () {
      const dir = await mkdtemp(join(tmpdir(), 'herald-claims-'))
      try {
        const topic = randomName()
        const module = `import { messageHandler } from ${JSON.stringify(LIB_URL)}\nexport const onOrder = messageHandler({ topic: ${JSON.stringify(topic)} }, async () => {})\n`
        await writeFile(join(dir, 'a.mjs'), module)
        await writeFile(join(dir, 'b.mjs'), module)
        const err = await rejection(start({ messaging: memory(), dir }))
        expect(err.message).to.match(/^handlers "handler\(.+\)" \(.*a\.mjs, export onOrder\) and "handler\(.+\)" \(.*b\.mjs, export onOrder\) both consume topic/)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  })

  describe('@onEvent without @consumer', function () {
    it('is a start-up error naming the method, and is never taken by the next @consumer class', async function () {
      class Forgotten {
        @onEvent('order.refunded') async refunded (): Promise<void> {}
      }
      @consumer('shipping', { topics: [randomName()] })
      class Shipping {
        @onEvent('order.paid') async paid (): Promise<void> {}
      }
      expect(definitionOf(Shipping)!.targets.map(t => t.name)).to.deep.equal(['Shipping.paid'])
      const err = await rejection(start({ messaging: memory(), handlers: [Shipping] }))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.equal('startConsumers: @onEvent method refunded ("order.refunded") is on a class without @consumer, so nothing would call it; add @consumer(group, { topics }) to the class, or remove @onEvent')
      void Forgotten
    })
  })

  describe('retry waits', function () {
    it('many messages waiting for a retry at once raise no MaxListenersExceededWarning', async function () {
      const warnings: string[] = []
      const onWarning = (w: Error): void => { warnings.push(w.name) }
      process.on('warning', onWarning)
      try {
        const m = memory()
        const topic = randomName()
        let failed = 0
        await start({ messaging: m, handlers: [messageHandler({ topic, concurrency: 6, retryDelay: 60_000, durableRetryAfter: false }, async function flaky () { failed++; throw new Error('later') })] })
        for (let n = 0; n < 12; n++) await m.producer.send(topic, { n }, { key: `k${n}` })
        await eventually(() => failed === 12, 'twelve messages waiting for their retry')
        // A warning is emitted on the next tick.
        await new Promise(resolve => setImmediate(resolve))
        expect(warnings).to.not.include('MaxListenersExceededWarning')
      } finally {
        process.removeListener('warning', onWarning)
      }
    })
  })

  describe('signals', function () {
    it('a signal stops the runner but does not close a messaging instance it was given', async function () {
      const m = memory()
      const topic = randomName()
      const keep = (): void => {} // stands for the application's own handler of the signal
      process.on('SIGUSR2', keep)
      try {
        const runner = await start({ messaging: m, signals: ['SIGUSR2'], handlers: [messageHandler({ topic }, async function noop () {})] })
        process.emit('SIGUSR2', 'SIGUSR2')
        await runner.stop()
        await new Promise(resolve => setImmediate(resolve))
        const sent = await m.publishEvent('still.open', { ok: true }, { topic })
        expect(sent.name).to.equal('still.open')
      } finally {
        process.removeListener('SIGUSR2', keep)
      }
    })
  })
})
