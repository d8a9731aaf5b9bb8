import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

/**
 * What a user gets from `npm i herald`: the packed tarball (as built by `npm run build`)
 * installed into a fresh project outside the repository, with none of the broker clients.
 * The memory broker works; choosing another broker says which package to install.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
const CLIENTS = { kafka: 'kafkajs', rabbitmq: 'amqplib', redis: 'ioredis' } as const

interface Outcome { code: number | null, stdout: string, stderr: string }

/**
 * Runs a command to its end (killed after a minute: a consumer that did connect would run
 * on), resolving with its exit code and output even when it fails.
 */
async function outcome (file: string, args: string[], cwd: string): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, timeout: 60_000, env: { PATH: process.env.PATH ?? '', HERALD_LOG_LEVEL: 'silent' } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : null, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

describe('herald installed from its tarball without any broker client', function () {
  this.timeout(180_000)
  let dir: string
  let project: string

  before(async function () {
    dir = await mkdtemp(join(tmpdir(), 'herald-install-'))
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT })
    const tarball = join(dir, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename)
    project = join(dir, 'app')
    await mkdir(join(project, 'handlers'), { recursive: true })
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project })
  })

  after(async function () {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('installs none of kafkajs, amqplib and ioredis: they are optional peer dependencies', async function () {
    const installed = await readdir(join(project, 'node_modules'))
    expect(installed).to.include('herald')
    for (const client of Object.values(CLIENTS)) expect(installed).to.not.include(client)
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/herald/package.json'), 'utf8')) as Record<string, Record<string, unknown>>
    for (const client of Object.values(CLIENTS)) {
      expect(manifest.dependencies, 'dependencies').to.not.have.property(client)
      expect(manifest.peerDependenciesMeta?.[client], `peerDependenciesMeta.${client}`).to.deep.equal({ optional: true })
    }
  })

  it('the memory broker publishes and consumes', async function () {
    await writeFile(join(project, 'memory.mjs'), `
      import { createMessaging, messageHandler, startConsumers } from 'herald'
      const messaging = createMessaging({ broker: 'memory', logger: false })
      let received
      const handled = new Promise(resolve => { received = resolve })
      const handler = messageHandler({ topic: 'orders', group: 'app' }, async (data) => { received(data) })
      const runner = await startConsumers({ messaging, handlers: [handler], signals: false })
      await messaging.publishEvent('order.placed', { id: 7 }, { topic: 'orders' })
      console.log(JSON.stringify(await handled))
      await runner.stop()
      await messaging.close()
    `)
    const result = await outcome(process.execPath, ['memory.mjs'], project)
    expect(result, result.stderr).to.include({ code: 0 })
    expect(result.stdout.trim()).to.equal('{"id":7}')
  })

  for (const [broker, client] of Object.entries(CLIENTS)) {
    it(`connect() and startConsumers() on ${broker} reject with a ConfigError saying \`npm i ${client}\``, async function () {
      await writeFile(join(project, `${broker}.mjs`), `
        import { createMessaging, messageHandler, startConsumers } from 'herald'
        const report = (err) => ({ name: err.name, code: err.code, message: err.message, stack: err.stack })
        const messaging = createMessaging({ broker: '${broker}', logger: false })
        const connect = await messaging.connect().then(() => null, report)
        const handler = messageHandler({ topic: 'orders', group: 'app' }, async () => {})
        const start = await startConsumers({ messaging, handlers: [handler], signals: false }).then(() => null, report)
        console.log(JSON.stringify({ connect, start }))
        process.exit(0)
      `)
      const result = await outcome(process.execPath, [`${broker}.mjs`], project)
      expect(result, result.stderr).to.include({ code: 0 })
      const { connect, start } = JSON.parse(result.stdout) as Record<string, { name: string, code: string, message: string, stack: string } | null>
      for (const err of [connect, start]) {
        expect(err, 'the rejection').to.not.equal(null)
        expect(err!.name).to.equal('ConfigError')
        expect(err!.code).to.equal('HERALD_CONFIG')
        expect(err!.message).to.include(`needs the package ${client}`).and.include(`npm i ${client}`)
        expect(err!.stack).to.not.include('ERR_MODULE_NOT_FOUND')
      }
    })

    it(`the herald CLI on ${broker} prints \`npm i ${client}\` and exits 1`, async function () {
      await writeFile(join(project, 'handlers/orders.mjs'), `
        import { messageHandler } from 'herald'
        export default messageHandler({ topic: 'orders', group: 'app' }, async () => {})
      `)
      const result = await outcome(process.execPath, ['node_modules/.bin/herald', 'consumer', '--broker', broker, '--handlers', './handlers'], project)
      expect(result.code, result.stderr).to.equal(1)
      expect(result.stderr).to.include(`herald: broker: broker "${broker}" needs the package ${client}, which is not installed: run \`npm i ${client}\``)
      expect(result.stderr).to.not.include('ERR_MODULE_NOT_FOUND')
    })
  }

  it('herald/metrics without prom-client: the import works and heraldMetrics() throws a ConfigError saying `npm i prom-client`', async function () {
    expect(existsSync(join(project, 'node_modules/prom-client')), 'prom-client installed').to.equal(false)
    await writeFile(join(project, 'metrics.mjs'), `
      import { heraldMetrics } from 'herald/metrics'
      try {
        heraldMetrics()
        console.log(JSON.stringify(null))
      } catch (err) {
        console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message, stack: err.stack }))
      }
    `)
    const result = await outcome(process.execPath, ['metrics.mjs'], project)
    expect(result, result.stderr).to.include({ code: 0 })
    const err = JSON.parse(result.stdout) as { name: string, code: string, message: string, stack: string } | null
    expect(err, 'heraldMetrics() threw').to.not.equal(null)
    expect(err!.name).to.equal('ConfigError')
    expect(err!.code).to.equal('HERALD_CONFIG')
    expect(err!.message).to.include('npm i prom-client')
    expect(err!.stack).to.not.include('ERR_MODULE_NOT_FOUND')
  })

  it('a TypeScript project using it compiles with skipLibCheck: false', async function () {
    await writeFile(join(project, 'app.ts'), `
      import { createMessaging, type MessagingOptions } from 'herald'
      const options: MessagingOptions = { broker: 'memory', source: 'app' }
      await createMessaging(options).publishEvent('order.placed', { id: 7 })
    `)
    // The repository's compiler and Node types; nothing else the project does not have.
    await writeFile(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true,
        skipLibCheck: false, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')]
      },
      files: ['app.ts']
    }))
    expect(existsSync(join(project, 'node_modules/kafkajs'))).to.equal(false)
    const result = await outcome(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.'], project)
    expect(result.code, result.stdout + result.stderr).to.equal(0)
  })
})
