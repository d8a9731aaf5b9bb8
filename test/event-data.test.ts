import { expect } from 'chai'
import type { BrokerKind, Subscription } from '../lib/brokers/broker.js'
import type { Event } from '../lib/event.js'
import type { HandlerContext } from '../lib/handlers/handler.js'
import { createMessaging, messageHandler, startConsumers, type Messaging, type Runner } from '../lib/index.js'
import { brokerOptions, brokerSelected, eventually, randomName } from './helpers.js'

/**
 * An event always carries `data`: `publishEvent(name, undefined)` (or a route mapper that
 * returns nothing) puts `"data":null` on the wire, and a handler receives `null`, never
 * the whole envelope in its place.
 */
describe('events without data', function () {
  this.timeout(30_000)
  const open: Array<Messaging | Runner | Subscription> = []

  afterEach(async function () {
    for (const o of open.splice(0).reverse()) await ('stop' in o ? o.stop() : o.close()).catch(() => {})
  })

  for (const kind of ['memory', 'redis'] as BrokerKind[]) {
    ;(brokerSelected(kind) ? it : it.skip)(`on ${kind}: publishEvent(name, undefined) sends "data":null, and a messageHandler receives null`, async function () {
      const m = createMessaging(brokerOptions(kind))
      open.push(m)
      const topic = randomName('no-data')
      const got: Array<{ message: unknown, ctx: HandlerContext }> = []
      open.push(await startConsumers({
        messaging: m,
        signals: false,
        handlers: [messageHandler({ topic, group: randomName('g') }, async (message, ctx) => { got.push({ message, ctx }) })]
      }))
      const wire: string[] = []
      open.push(await (await m.broker()).subscribe({ group: randomName('raw'), topics: [topic], maxInFlight: 10, deadLetterTopics: [] }, async delivery => {
        wire.push(delivery.value.toString())
        await delivery.ack()
      }))

      // The type says what arrives: undefined data travels as null.
      const event: Event<null> = await m.publishEvent('user.pinged', undefined, { topic })
      await m.publishEvent('user.pinged', { sentinel: true }, { topic })
      await eventually(() => got.length === 2 && wire.length === 2, 'both events to arrive')

      expect(event.data).to.equal(null)
      expect(JSON.parse(wire[0]!)).to.have.property('data', null)
      expect(wire[0]).to.include('"data":null')
      expect(got[0]!.message).to.equal(null)
      expect(got[0]!.ctx.event?.id).to.equal(event.id)
      expect(got[0]!.ctx.event?.data).to.equal(null)
      expect(got[1]!.message).to.deep.equal({ sentinel: true })
    })
  }
})
