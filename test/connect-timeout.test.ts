// A broker address where something accepts the connection and never answers (a wrong
// port, a half-dead proxy) must hang nothing: connect(), startConsumers(), health() and
// the Fastify plugin's registration each end within a bound, and nothing is left open.
import { expect } from 'chai'
import Fastify from 'fastify'
import { inspect } from 'node:util'
import herald from '../plugins/fastify.js'
import { BrokerError, createMessaging, messageHandler, startConsumers, type MessagingOptions } from '../lib/index.js'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { brokerSelected, eventually, randomName } from './helpers.js'
import { SilentServer } from './silent-server.js'
import { RecordingLogger } from './support/recording-logger.js'

const SECRET = 'S3cr3t-silent'

export function silentOptions (kind: Exclude<BrokerKind, 'memory'>, port: number): MessagingOptions {
  switch (kind) {
    case 'kafka': return { broker: 'kafka', bootstrapServers: `127.0.0.1:${port}` }
    case 'rabbitmq': return { broker: 'rabbitmq', url: `amqp://app:${SECRET}@127.0.0.1:${port}` }
    case 'redis': return { broker: 'redis', url: `redis://app:${SECRET}@127.0.0.1:${port}` }
  }
}

function expectTimeout (err: unknown, kind: string, port: number): void {
  expect(err, String(err)).to.be.instanceOf(BrokerError)
  const e = err as BrokerError
  expect(e.code).to.equal('HERALD_CONNECT_TIMEOUT')
  expect(e.message).to.contain(kind).and.to.contain(`127.0.0.1:${port}`).and.to.contain('connectTimeout')
  expect(inspect(e, { depth: 10 })).not.to.contain(SECRET)
}

describe('a broker that accepts connections and never answers', function () {
  this.timeout(30_000)
  let server: SilentServer
  beforeEach(async function () { server = await new SilentServer().listen() })
  afterEach(async function () { await server.close() })

  for (const kind of ['kafka', 'rabbitmq', 'redis'] as const) {
    if (!brokerSelected(kind)) continue
    describe(kind, function () {
      it('connect() rejects within connectTimeout with HERALD_CONNECT_TIMEOUT naming the broker and the masked address, and leaves no connection open', async function () {
        const logger = new RecordingLogger()
        const m = createMessaging({ ...silentOptions(kind, server.port), connectTimeout: 1000, logger })
        try {
          const err = await m.connect().then(() => undefined, (e: unknown) => e)
          expectTimeout(err, kind, server.port)
          expect(server.accepted).to.be.greaterThan(0)
          // The half-open client was closed: the server sees every connection go.
          await eventually(() => server.sockets.size === 0, 'every connection to the silent server to close')
        } finally {
          await m.close()
        }
        for (const line of logger.lines()) expect(line).not.to.contain(SECRET)
      })

      it('startConsumers() rejects within connectTimeout', async function () {
        const m = createMessaging({ ...silentOptions(kind, server.port), connectTimeout: 1000, logger: false })
        try {
          const err = await startConsumers({
            messaging: m,
            handlers: [messageHandler({ topic: randomName(), group: randomName('g') }, async () => {})],
            signals: false
          }).then(() => undefined, (e: unknown) => e)
          expectTimeout(err, kind, server.port)
        } finally {
          await m.close()
        }
      })

      it('health() resolves ok: false instead of hanging', async function () {
        const m = createMessaging({ ...silentOptions(kind, server.port), connectTimeout: 1000, logger: false })
        try {
          const health = await m.health()
          expect(health.ok).to.equal(false)
          expect(health.broker).to.equal(kind)
          expect(health.detail).to.contain(`127.0.0.1:${server.port}`).and.not.to.contain(SECRET)
        } finally {
          await m.close()
        }
      })
    })
  }

  for (const kind of ['redis', 'rabbitmq'] as const) {
    if (!brokerSelected(kind)) continue
    it(`${kind}: the Fastify plugin's registration fails with the connect timeout (default 5 s), before Fastify's own plugin timeout`, async function () {
      const app = Fastify({ logger: false })
      try {
        const err = await (async () => {
          await app.register(herald, { ...silentOptions(kind, server.port), logger: false })
          await app.ready()
        })().then(() => undefined, (e: unknown) => e)
        expectTimeout(err, kind, server.port)
      } finally {
        await app.close().catch(() => {})
      }
    })
  }
})
