// The runner's ordering and concurrency pieces, alone (no broker).
import { expect } from 'chai'
import { KeyQueue, Semaphore } from '../../lib/runner/key-queue.js'

const tick = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

function deferred (): { promise: Promise<void>, resolve: () => void, reject: (err: Error) => void } {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

describe('unit: KeyQueue', function () {
  it('runs tasks of one key one after the other, in the order added, and other keys side by side', async function () {
    const queue = new KeyQueue()
    const log: string[] = []
    const a1 = deferred()
    const done = [
      queue.run('a', async () => { log.push('a1 start'); await a1.promise; log.push('a1 end') }),
      queue.run('a', async () => { log.push('a2') }),
      queue.run('b', async () => { log.push('b1') }),
      queue.run(undefined, async () => { log.push('none') })
    ]
    await tick()
    // a2 waits for a1; b1 and the keyless task did not wait for anything.
    expect(log).to.have.members(['a1 start', 'b1', 'none'])
    a1.resolve()
    await Promise.all(done)
    expect(log.slice(3)).to.deep.equal(['a1 end', 'a2'])
  })

  it('a task that hands its key on lets the next of its key start before it ends, and no later one before that', async function () {
    const queue = new KeyQueue()
    const log: string[] = []
    const handOn = deferred()
    const end = deferred()
    const first = queue.run('k', async next => { log.push('1 start'); await handOn.promise; next(); await end.promise; log.push('1 end') })
    const second = queue.run('k', async () => { log.push('2') })
    await tick()
    expect(log, 'the second waits until the first hands the key on').to.deep.equal(['1 start'])
    handOn.resolve()
    await second
    expect(log).to.deep.equal(['1 start', '2'])
    end.resolve()
    await first
    expect(log).to.deep.equal(['1 start', '2', '1 end'])
  })

  it('a failed task does not stop the next of its key; its own promise rejects', async function () {
    const queue = new KeyQueue()
    const first = queue.run('k', async () => { throw new Error('boom') })
    let ran = false
    const second = queue.run('k', async () => { ran = true })
    const err = await first.then(() => undefined, (e: Error) => e)
    expect(err?.message).to.equal('boom')
    await second
    expect(ran).to.equal(true)
  })
})

describe('unit: Semaphore', function () {
  it('lets `slots` holders in at once; the next waits for a release, first come first served', async function () {
    const slots = new Semaphore(2)
    await slots.acquire()
    await slots.acquire()
    const order: number[] = []
    const third = slots.acquire().then(() => order.push(3))
    const fourth = slots.acquire().then(() => order.push(4))
    await tick()
    expect(order).to.deep.equal([])
    slots.release()
    await third
    expect(order).to.deep.equal([3])
    slots.release()
    await fourth
    expect(order).to.deep.equal([3, 4])
  })
})
