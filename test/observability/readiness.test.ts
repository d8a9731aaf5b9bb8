import { expect } from 'chai'
import { createMessaging, messageHandler, startConsumers, type Messaging } from '../../lib/index.js'
import { brokerOptions, eventually, randomName } from '../helpers.js'

async function get (port: number, path: string): Promise<{ status: number, body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: res.status, body: await res.text() }
}

describe('readiness', function () {
  this.timeout(30_000)
  let m: Messaging
  beforeEach(() => { m = createMessaging(brokerOptions('memory')) })
  afterEach(async () => { await m.close() })

  it('a runner is ready once subscribed, not ready from the first moment of stop() while a handler drains, alive throughout, and serves /metrics', async function () {
    const topic = randomName()
    let unblock!: () => void
    const blocked = new Promise<void>(resolve => { unblock = resolve })
    let running = false
    const runner = await startConsumers({
      messaging: m,
      signals: false,
      httpPort: 0,
      handlers: [messageHandler({ topic, group: randomName('g') }, async () => { running = true; await blocked })]
    })
    const port = runner.httpPort!
    expect(runner.state).to.equal('ready')
    expect(await get(port, '/readyz')).to.include({ status: 200 })
    expect((await get(port, '/metrics')).body).to.include('herald_consumed_messages_total')

    await m.publishEvent('user.created', { id: 1 }, { topic })
    await eventually(() => running, 'the handler to run')
    const stopping = runner.stop()
    expect(runner.state).to.equal('draining')
    const ready = await get(port, '/readyz')
    expect(ready.status).to.equal(503)
    expect(JSON.parse(ready.body)).to.deep.equal({ status: 'not ready', state: 'draining' })
    const live = await get(port, '/livez')
    expect(live.status).to.equal(200)
    expect(JSON.parse(live.body)).to.include({ state: 'draining' })

    unblock()
    await stopping
    expect(runner.state).to.equal('stopped')
  })

  it('httpPort must be a port number', async function () {
    let error: unknown
    try {
      await startConsumers({ messaging: m, signals: false, httpPort: -1, handlers: [messageHandler({ topic: randomName() }, async () => {})] })
    } catch (err) { error = err }
    expect(String(error)).to.match(/httpPort must be a port number from 0/)
  })
})
