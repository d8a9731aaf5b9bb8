import { expect } from 'chai'
import { sharedMemoryStore } from '../../lib/brokers/memory/memory-store.js'
import { createMessaging } from '../../lib/index.js'
import { randomName } from '../helpers.js'

/**
 * The embedded broker's store is one per process, shared by every memory Messaging
 * instance; options that shape it must not be silently dropped by the first one made.
 */
describe('memory broker', function () {
  this.timeout(30_000)

  it('memory.retain of a later instance takes effect: the shared store keeps the largest retention asked', async function () {
    const first = createMessaging({ broker: 'memory', logger: false })
    // Above the default (10000) that the first instance, and any earlier test, asked for.
    const retain = 10_030
    const later = createMessaging({ broker: 'memory', logger: false, memory: { retain } })
    const topic = randomName('memory-retain')
    try {
      // The first instance's broker (and the store) exists before the later one asks for more.
      await first.producer.send(randomName('memory-other'), { first: true })
      const count = retain + 20
      for (let i = 0; i < count; i += 500) {
        await Promise.all(Array.from({ length: Math.min(500, count - i) }, async (_v, j) => await later.producer.send(topic, { n: i + j })))
      }
      expect(sharedMemoryStore().entries(topic)).to.have.length(retain)
    } finally {
      await later.close()
      await first.close()
    }
  })
})
