// What connect() says when the broker answers but will not let Herald in, or is not there at all.
import { expect } from 'chai'
import { Redis } from 'ioredis'
import { BrokerError, createMessaging } from '../lib/index.js'
import { brokerOptions, brokerSelected } from './helpers.js'
import { RecordingLogger } from './support/recording-logger.js'

describe('connect errors', function () {
  this.timeout(30_000)

  if (brokerSelected('redis')) {
    it('redis: a database the server does not have fails connect() with HERALD_UNKNOWN_DATABASE, instead of running on database 0', async function () {
      const base = new URL(String(brokerOptions('redis').url))
      const probe = new Redis(base.toString(), { lazyConnect: true })
      await probe.connect()
      const databases = Number((await probe.config('GET', 'databases') as string[])[1])
      probe.disconnect()
      base.pathname = `/${databases}`
      const m = createMessaging({ ...brokerOptions('redis'), url: base.toString() })
      try {
        const err = await m.connect().then(() => undefined, (e: unknown) => e)
        expect(err).to.be.instanceOf(BrokerError)
        expect((err as BrokerError).code).to.equal('HERALD_UNKNOWN_DATABASE')
        expect((err as BrokerError).retriable).to.equal(false)
        expect((err as Error).message).to.contain(`no database ${databases}`)
      } finally {
        await m.close()
      }
      // The last database there is works.
      base.pathname = `/${databases - 1}`
      const ok = createMessaging({ ...brokerOptions('redis'), url: base.toString() })
      try {
        await ok.connect()
      } finally {
        await ok.close()
      }
    })
  }

  if (brokerSelected('kafka')) {
    it('kafka: an unreachable Kafka at start-up logs no "lost the connection; reconnecting" before connect() rejects', async function () {
      const logger = new RecordingLogger()
      const m = createMessaging({ broker: 'kafka', bootstrapServers: '127.0.0.1:1', logger, kafka: { client: { retry: { retries: 1, initialRetryTime: 100 } } } })
      try {
        const err = await m.connect().then(() => undefined, (e: unknown) => e)
        expect(err).to.be.instanceOf(BrokerError)
        expect((err as Error).message).to.match(/^could not reach Kafka at 127\.0\.0\.1:1: /)
      } finally {
        await m.close()
      }
      expect(logger.problems().map(r => r.msg), logger.describe()).to.deep.equal([])
    })
  }
})
