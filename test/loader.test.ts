import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import { existsSync, realpathSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { createMessaging, HandlerError, loadHandlers, startConsumers, type Messaging, type Runner } from '../lib/index.js'
import type { HandlerDefinition } from '../lib/handlers/handler.js'
import { registeredHandlers, registerHandler, unregisterHandlers } from '../lib/handlers/registry.js'
import { findHandlerFiles, typeScriptLoaderActive } from '../lib/runner/loader.js'
import { eventually, randomName } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = join(ROOT, 'test/fixtures')
const HANDLERS = realpathSync(join(FIXTURES, 'handlers'))
const LIB_URL = pathToFileURL(join(ROOT, 'lib/index.ts')).href
const DIST_LOADER = join(ROOT, 'dist/lib/runner/loader.js')

/** Written by the fixtures: what their handlers received, and which skipped files ran anyway. */
const RECEIVED = Symbol.for('herald.fixture.received')
const SKIPPED_RAN = Symbol.for('herald.fixture.loaded')
const OUTSIDE_RAN = Symbol.for('herald.fixture.outside')
const fixtureGlobals = globalThis as typeof globalThis & {
  [RECEIVED]?: Array<{ handler: string, message: { id?: string }, topic: string }>
  [SKIPPED_RAN]?: string[]
  [OUTSIDE_RAN]?: string[]
}

const names = (definitions: HandlerDefinition[]): string[] => definitions.map(d => d.name).sort()
const sortedByName = <T extends { name: string }>(list: readonly T[]): T[] => [...list].sort((a, b) => a.name < b.name ? -1 : 1)

/** A handler module for a temporary folder: it imports Herald's source and records that it ran. */
function handlerModule (topic: string, fn: string, ran?: string): string {
  return [
    `import { messageHandler } from ${JSON.stringify(LIB_URL)}`,
    ran === undefined ? '' : `(globalThis[Symbol.for('herald.fixture.outside')] ??= []).push(${JSON.stringify(ran)})`,
    `export default messageHandler({ topic: ${JSON.stringify(topic)} }, async function ${fn} () {})`,
    ''
  ].join('\n')
}

async function rejection (promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

describe('loading a handlers directory', function () {
  const open: Array<Runner | Messaging> = []
  let registered: HandlerDefinition[] = []

  before(function () {
    // The suite runs under tsx (see .mocharc.json), so TypeScript handlers load in-process.
    expect(typeScriptLoaderActive(), 'these tests run under a TypeScript loader').to.equal(true)
    // Handlers that other test files registered with autoStart would join startConsumers().
    registered = registeredHandlers()
    unregisterHandlers()
  })

  after(function () {
    for (const d of registered) registerHandler(d)
  })

  afterEach(async function () {
    for (const c of open.splice(0).reverse()) await ('stop' in c ? c.stop() : c.close())
  })

  function memory (): Messaging {
    const m = createMessaging({ broker: 'memory', logger: false, source: 'loader-test' })
    open.push(m)
    return m
  }

  async function start (options: Parameters<typeof startConsumers>[0]): Promise<Runner> {
    const runner = await startConsumers({ signals: false, ...options })
    open.push(runner)
    return runner
  }

  describe('findHandlerFiles', function () {
    it('lists the handler modules recursively and sorted, skipping _ and . names, *.d.ts, *.test.* and non-module files', async function () {
      expect(await findHandlerFiles(HANDLERS)).to.deep.equal([
        join(HANDLERS, 'audit.mjs'),
        join(HANDLERS, 'orders/created.js'),
        join(HANDLERS, 'shipping.ts'),
        join(HANDLERS, 'users.js')
      ])
    })

    it('accepts a path relative to the working directory', async function () {
      expect(process.cwd()).to.equal(realpathSync(ROOT))
      expect(await findHandlerFiles('test/fixtures/handlers')).to.have.length(4)
    })

    it('fails naming the folder when it does not exist', async function () {
      const err = await rejection(findHandlerFiles('test/fixtures/no-such-folder'))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.contain('"test/fixtures/no-such-folder" does not exist or is not a directory')
    })

    it('fails naming the path when it is a file, not a folder', async function () {
      const err = await rejection(findHandlerFiles('test/fixtures/handlers/users.js'))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.contain('"test/fixtures/handlers/users.js" does not exist or is not a directory')
    })
  })

  describe('loadHandlers', function () {
    it('returns every exported handler (default and named; .js, .mjs and a TypeScript @consumer class) and ignores other exports', async function () {
      const definitions = await loadHandlers(HANDLERS)
      expect(names(definitions)).to.deep.equal(['ShippingConsumer', 'chargeCard', 'recordAudit', 'userCreated', 'userDeleted'])
      const byName = new Map(definitions.map(d => [d.name, d]))
      expect(byName.get('ShippingConsumer')!.group).to.equal('shipping')
      expect(byName.get('recordAudit')!.topics).to.deep.equal(['orders.created', 'user.created'])
    })

    it('never imports the files and folders it skips', async function () {
      await loadHandlers(HANDLERS)
      expect(fixtureGlobals[SKIPPED_RAN] ?? []).to.deep.equal([])
    })

    it('loading twice gives the same handlers, once each', async function () {
      const first = await loadHandlers(HANDLERS)
      const second = await loadHandlers(HANDLERS)
      expect(second).to.have.length(first.length)
      second.forEach((d, i) => expect(d).to.equal(first[i]))
    })

    it('a module that exports no handler fails the load, naming the file and the fix', async function () {
      const err = await rejection(loadHandlers(join(FIXTURES, 'no-handler')))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.contain('handler module test/fixtures/no-handler/helpers.js exports no handler')
      expect(err.message).to.contain('leading "_"')
    })

    it('a module with a syntax error fails the load, naming the file and the error', async function () {
      const err = await rejection(loadHandlers(join(FIXTURES, 'syntax-error')))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.match(/^could not load handler module test\/fixtures\/syntax-error\/broken\.js: .+/)
    })
  })

  describe('links', function () {
    let tmp: string

    beforeEach(async function () {
      tmp = realpathSync(await mkdtemp(join(tmpdir(), 'herald-loader-')))
      // The handler modules written here use `import`: say so, as a user's package.json would.
      await writeFile(join(tmp, 'package.json'), '{ "type": "module" }\n')
    })

    afterEach(async function () {
      await rm(tmp, { recursive: true, force: true })
    })

    it('a link to a file or folder outside the directory is neither listed nor imported', async function () {
      await mkdir(join(tmp, 'outside/more'), { recursive: true })
      await mkdir(join(tmp, 'handlers'))
      const marker = randomName('outside')
      await writeFile(join(tmp, 'outside/steal.js'), handlerModule('outside.file', 'outsideFile', `${marker}/file`))
      await writeFile(join(tmp, 'outside/more/steal.js'), handlerModule('outside.folder', 'outsideFolder', `${marker}/folder`))
      await writeFile(join(tmp, 'handlers/inside.js'), handlerModule('inside', 'inside'))
      await symlink(join(tmp, 'outside/steal.js'), join(tmp, 'handlers/steal.js'))
      await symlink('../outside/more', join(tmp, 'handlers/more'))

      expect(await findHandlerFiles(join(tmp, 'handlers'))).to.deep.equal([join(tmp, 'handlers/inside.js')])
      const runner = await start({ dir: join(tmp, 'handlers'), messaging: memory() })
      expect(runner.consumers.map(c => c.name)).to.deep.equal(['inside'])
      const ran = (): string[] => (fixtureGlobals[OUTSIDE_RAN] ?? []).filter(m => m.startsWith(marker)).sort()
      expect(ran()).to.deep.equal([])
      // The check above can fail: loaded from their own folder, the same modules do record themselves.
      await loadHandlers(join(tmp, 'outside'))
      expect(ran()).to.deep.equal([`${marker}/file`, `${marker}/folder`])
    })

    it('a linked folder that points inside the directory is loaded once, not twice', async function () {
      await mkdir(join(tmp, 'handlers/orders'), { recursive: true })
      await writeFile(join(tmp, 'handlers/orders/created.js'), handlerModule('orders.created', 'ordersCreated'))
      // Sorted before "orders", so the link is walked first.
      await symlink('orders', join(tmp, 'handlers/also-orders'))

      expect(await findHandlerFiles(join(tmp, 'handlers'))).to.deep.equal([join(tmp, 'handlers/orders/created.js')])
      const runner = await start({ dir: join(tmp, 'handlers'), messaging: memory() })
      expect(runner.consumers).to.deep.equal([{ name: 'ordersCreated', group: 'loader-test', topics: ['orders.created'] }])
    })

    it('a dangling link is ignored', async function () {
      await mkdir(join(tmp, 'handlers'))
      await writeFile(join(tmp, 'handlers/inside.js'), handlerModule('inside', 'inside'))
      await symlink(join(tmp, 'gone.js'), join(tmp, 'handlers/gone.js'))
      expect(await findHandlerFiles(join(tmp, 'handlers'))).to.deep.equal([join(tmp, 'handlers/inside.js')])
    })
  })

  describe('TypeScript handlers without a TypeScript loader', function () {
    let tmp: string

    before(function () {
      if (!existsSync(DIST_LOADER)) throw new Error(`${DIST_LOADER} is missing: run "npm run build" first`)
    })

    beforeEach(async function () {
      tmp = realpathSync(await mkdtemp(join(tmpdir(), 'herald-loader-')))
      // The handler modules written here use `import`: say so, as a user's package.json would.
      await writeFile(join(tmp, 'package.json'), '{ "type": "module" }\n')
    })

    afterEach(async function () {
      await rm(tmp, { recursive: true, force: true })
    })

    /** Runs findHandlerFiles from the build in plain Node (no tsx) and returns what it printed. */
    function findWithPlainNode (dir: string): { ok: boolean, files?: string[], name?: string, message?: string } {
      const script = `
        import { findHandlerFiles } from ${JSON.stringify(pathToFileURL(DIST_LOADER).href)}
        try {
          console.log(JSON.stringify({ ok: true, files: await findHandlerFiles(${JSON.stringify(dir)}) }))
        } catch (err) {
          console.log(JSON.stringify({ ok: false, name: err.name, message: err.message }))
        }`
      // Node versions that strip types by themselves would load the .ts file: turn that off.
      const nodeStripsTypes = Boolean((process.features as { typescript?: unknown }).typescript)
      const child = spawnSync(process.execPath, [...(nodeStripsTypes ? ['--no-experimental-strip-types'] : []), '--input-type=module', '-e', script], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '' },
        encoding: 'utf8',
        timeout: 10_000
      })
      expect(child.status, child.stderr).to.equal(0)
      return JSON.parse(child.stdout) as { ok: boolean, files?: string[], name?: string, message?: string }
    }

    it('a .ts handler fails with an error naming the file and telling to use a TypeScript loader', function () {
      const result = findWithPlainNode('test/fixtures/handlers')
      expect(result.ok).to.equal(false)
      expect(result.name).to.equal('HandlerError')
      expect(result.message).to.contain('handler file test/fixtures/handlers/shipping.ts is TypeScript')
      expect(result.message).to.contain('without a TypeScript loader')
      expect(result.message).to.contain('node --import tsx')
    })

    it('.d.ts files are skipped, so a folder of .js handlers with declarations loads', async function () {
      await writeFile(join(tmp, 'x.js'), 'export {}\n')
      await writeFile(join(tmp, 'x.d.ts'), 'export {}\n')
      expect(findWithPlainNode(tmp)).to.deep.equal({ ok: true, files: [join(tmp, 'x.js')] })
    })
  })

  describe('startConsumers({ dir })', function () {
    it('subscribes every loaded handler in its group; group applies only to handlers that name none', async function () {
      const runner = await start({ dir: 'test/fixtures/handlers', group: 'fallback', messaging: memory() })
      expect(sortedByName(runner.consumers)).to.deep.equal([
        { name: 'ShippingConsumer', group: 'shipping', topics: ['orders.paid'] },
        { name: 'chargeCard', group: 'billing', topics: ['orders.created'] },
        { name: 'recordAudit', group: 'audit', topics: ['orders.created', 'user.created'] },
        { name: 'userCreated', group: 'fallback', topics: ['user.created'] },
        { name: 'userDeleted', group: 'fallback', topics: ['user.deleted'] }
      ])
    })

    it('without group, handlers that name none are in the messaging source\'s group', async function () {
      const runner = await start({ dir: 'test/fixtures/handlers', messaging: memory() })
      expect(runner.consumers.find(c => c.name === 'userCreated')!.group).to.equal('loader-test')
    })

    it('a loaded handler receives the messages of its topic', async function () {
      const m = memory()
      await start({ dir: 'test/fixtures/handlers', messaging: m })
      const id = randomName('order')
      await m.producer.send('orders.created', { id })
      const got = await eventually(() => fixtureGlobals[RECEIVED]?.find(r => r.message.id === id), 'chargeCard to receive the order')
      expect(got).to.deep.equal({ handler: 'chargeCard', message: { id }, topic: 'orders.created' })
    })

    it('topics narrows to the handlers of those topics, and a handler to those of its topics', async function () {
      const runner = await start({ dir: 'test/fixtures/handlers', topics: ['user.created'], messaging: memory() })
      expect(sortedByName(runner.consumers)).to.deep.equal([
        { name: 'recordAudit', group: 'audit', topics: ['user.created'] },
        { name: 'userCreated', group: 'loader-test', topics: ['user.created'] }
      ])
    })

    it('a module that exports no handler fails start-up naming the file, and nothing is started', async function () {
      const err = await rejection(start({ dir: 'test/fixtures/no-handler', messaging: memory() }))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.contain('test/fixtures/no-handler/helpers.js exports no handler')
      expect(open.filter(c => 'consumers' in c)).to.deep.equal([])
    })

    it('a missing directory fails start-up naming it', async function () {
      const err = await rejection(start({ dir: './handlers-that-do-not-exist', messaging: memory() }))
      expect(err).to.be.instanceOf(HandlerError)
      expect(err.message).to.contain('"./handlers-that-do-not-exist"')
    })
  })
})
