import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createMessaging } from '../lib/index.js'
import type { BrokerKind } from '../lib/brokers/broker.js'
import { cleanUpRun } from './cleanup.js'
import { brokerOptions, brokerSelected, randomName } from './helpers.js'
import { SilentServer } from './silent-server.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'dist/bin/herald.js')

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** `node dist/bin/herald.js …` in the repository root, with only the environment given. */
class Herald {
  stdout = ''
  stderr = ''
  readonly child: ChildProcess
  readonly #exit: Promise<Exit>

  constructor (args: string[], env: Record<string, string>) {
    // Nothing from the parent's environment (MESSAGING_BROKER, NODE_OPTIONS, …) leaks in.
    this.child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HERALD_LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { this.stdout += chunk })
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    this.#exit = new Promise((resolve, reject) => {
      this.child.once('error', reject)
      this.child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }))
    })
  }

  get running (): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  #describe (): string {
    return `\n--- stdout ---\n${this.stdout}--- stderr ---\n${this.stderr}`
  }

  /** Resolves once stdout has `text`; fails if the process exits first or after `timeout` ms. */
  async printed (text: string, timeout = 10_000): Promise<void> {
    const deadline = Date.now() + timeout
    while (!this.stdout.includes(text)) {
      if (!this.running) throw new Error(`herald exited (${String(this.child.exitCode ?? this.child.signalCode)}) before printing "${text}"${this.#describe()}`)
      if (Date.now() > deadline) throw new Error(`herald did not print "${text}" within ${timeout} ms${this.#describe()}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  /** Resolves with the exit code and the output; fails after `timeout` ms. */
  async exited (timeout = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`herald did not exit within ${timeout} ms${this.#describe()}`)), timeout)
    })
    try {
      return await Promise.race([this.#exit, late])
    } finally {
      clearTimeout(timer)
    }
  }
}

const lines = (text: string): string[] => text.split('\n').filter(line => line !== '')

/** A local port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

describe('the herald CLI', function () {
  this.timeout(30_000)
  const started: Herald[] = []

  function herald (args: string[], env: Record<string, string> = {}): Herald {
    const h = new Herald(args, env)
    started.push(h)
    return h
  }

  before(function () {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" first`)
  })

  afterEach(function () {
    for (const h of started.splice(0)) if (h.running) h.child.kill('SIGKILL')
  })

  describe('help and version', function () {
    for (const args of [['--help'], ['-h'], ['consumer', '--help']]) {
      it(`"${['herald', ...args].join(' ')}" prints the usage with the commands, flags and environment variables, exit 0`, async function () {
        const { code, stdout, stderr } = await herald(args).exited()
        expect(code).to.equal(0)
        expect(stderr).to.equal('')
        expect(stdout).to.match(/^Usage: herald <command>/)
        for (const word of ['consumer', 'dlq list', 'dlq replay', 'dlq purge', '--handlers DIR', '--topic T', '--group G', '--broker B', '--shutdown-timeout MS', '--help', '--version',
          'MESSAGING_BROKER', 'KAFKA_BOOTSTRAP_SERVERS', 'RABBITMQ_URL', 'REDIS_URL', 'SERVICE_NAME', 'HERALD_LOG_LEVEL']) {
          expect(stdout).to.contain(word)
        }
      })
    }

    it('--version prints the version from package.json', async function () {
      const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
      const { code, stdout } = await herald(['--version']).exited()
      expect(code).to.equal(0)
      expect(stdout).to.equal(`${version}\n`)
    })

    it('the compiled binary starts with a node shebang', function () {
      expect(readFileSync(BIN, 'utf8').split('\n')[0]).to.equal('#!/usr/bin/env node')
    })
  })

  it('"herald" with no command is a usage error: exit 2, the usage on stderr', async function () {
    const { code, stdout, stderr } = await herald([]).exited()
    expect(code).to.equal(2)
    expect(stdout).to.equal('')
    expect(stderr).to.match(/^Usage: herald <command>/)
  })

  describe('usage errors exit 2 with one line and a hint', function () {
    const cases: Array<[string, string[], string]> = [
      ['an unknown flag', ['consumer', '--nope'], 'herald: unknown option --nope'],
      ['an unknown short flag', ['consumer', '-x'], 'herald: unknown option -x'],
      ['an unknown command', ['produce'], 'herald: unknown command "produce"; the commands are: consumer, dlq'],
      ['a flag without its value', ['consumer', '--group'], 'herald: --group needs a value (write --group=VALUE when the value starts with "-")'],
      ['a value given to a boolean flag', ['--help=yes'], 'herald: --help takes no value'],
      ['a shutdown timeout that is not a whole number', ['consumer', '--shutdown-timeout', '5s'], 'herald: --shutdown-timeout must be a whole number of milliseconds, e.g. 30000; got "5s"'],
      ['an empty group', ['consumer', '--group='], 'herald: --group needs a group name'],
      ['an extra argument', ['consumer', './handlers'], 'herald: unexpected argument "./handlers"; give the handlers folder with --handlers DIR'],
      ['flags without a command', ['--handlers', 'x'], 'herald: give a command, e.g. "herald consumer"']
    ]
    for (const [what, args, message] of cases) {
      it(`${what}: "${message}"`, async function () {
        const { code, stdout, stderr } = await herald(args).exited()
        expect(code).to.equal(2)
        expect(stdout).to.equal('')
        expect(lines(stderr)).to.deep.equal([message, 'run "herald --help" for usage'])
      })
    }
  })

  describe('start-up failures exit 1 with one line, no stack trace', function () {
    async function failure (args: string[], env: Record<string, string> = {}): Promise<string> {
      const { code, stdout, stderr } = await herald(args, env).exited(20_000)
      expect(code, stderr).to.equal(1)
      expect(stdout).to.equal('')
      expect(lines(stderr), stderr).to.have.length(1)
      expect(stderr).not.to.match(/\n\s+at /)
      return stderr
    }

    it('a missing handlers folder is named', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/nope'])).to.equal(
        'herald: handlers directory "test/fixtures/nope" does not exist or is not a directory; pass dir (or --handlers) pointing at your handlers folder\n')
    })

    it('without --handlers, the folder is ./handlers', async function () {
      expect(await failure(['consumer'])).to.contain('handlers directory "./handlers" does not exist')
    })

    it('a handlers path that is a file, not a folder, is named', async function () {
      expect(await failure(['consumer', '--handlers', 'package.json'])).to.contain('handlers directory "package.json" does not exist or is not a directory')
    })

    it('an empty handlers folder says that folder has no handler module', async function () {
      const dir = await mkdtemp(join(tmpdir(), 'herald-empty-'))
      try {
        expect(await failure(['consumer', '--handlers', dir])).to.match(new RegExp(`^herald: handlers directory "${dir}" has no handler module \\(\\.js \\.mjs \\.cjs`))
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    it('a broker that accepts the connection and never answers: exit 1 after connectTimeout, naming the broker and the masked address', async function () {
      const server = await new SilentServer().listen()
      try {
        const stderr = await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers', '--broker', 'redis'], { REDIS_URL: `redis://:s3cret-pw@127.0.0.1:${server.port}` })
        expect(stderr).to.contain(`redis at redis://:***@127.0.0.1:${server.port} did not answer within 5000 ms (connectTimeout)`)
        expect(stderr).not.to.contain('s3cret-pw')
      } finally {
        await server.close()
      }
    })

    it('a module that exports no handler is named', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/no-handler'])).to.contain(
        'herald: handler module test/fixtures/no-handler/helpers.js exports no handler')
    })

    it('a module with a syntax error is named, with the error', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/syntax-error'])).to.match(
        /^herald: could not load handler module test\/fixtures\/syntax-error\/broken\.js: .*Unexpected token/)
    })

    it('a handler with a bad option names the file, the handler and the option', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/bad-option'])).to.equal(
        'herald: could not load handler module test/fixtures/bad-option/retry.js: messageHandler "retryForever": maxRetries must be a whole number of at least 0, got -1; e.g. maxRetries: 3 (retries after the first attempt; 0 for none)\n')
    })

    it('TypeScript handlers without a loader: names the file and says to use a TypeScript loader', async function () {
      // Node 22.18+ and 24 strip types by themselves, so they are a loader: turn that off.
      const stripsTypes = Boolean((process.features as { typescript?: unknown }).typescript)
      const stderr = await failure(['consumer', '--handlers', 'test/fixtures/handlers'], stripsTypes ? { NODE_OPTIONS: '--no-experimental-strip-types' } : {})
      expect(stderr).to.contain('handler file test/fixtures/handlers/shipping.ts is TypeScript')
      expect(stderr).to.contain('node --import tsx')
    })

    it('a bad --broker names broker and the allowed values', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers', '--broker', 'nats'])).to.equal(
        'herald: broker: unknown broker "nats"; use one of "kafka", "rabbitmq", "redis", "memory"\n')
    })

    it('a bad MESSAGING_BROKER names MESSAGING_BROKER and the allowed values', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers'], { MESSAGING_BROKER: 'nats' })).to.equal(
        'herald: MESSAGING_BROKER: unknown broker "nats"; use one of "kafka", "rabbitmq", "redis", "memory"\n')
    })

    it('--topic that no handler consumes is named', async function () {
      expect(await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers', '--topic', 'nobody.reads.this'])).to.contain(
        'no handler consumes topic "nobody.reads.this"')
    })

    it('a bad broker URL is reported with its password masked', async function () {
      const stderr = await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers', '--broker', 'rabbitmq'], { RABBITMQ_URL: 'http://app:s3cret-pw@localhost' })
      expect(stderr).to.contain('RABBITMQ_URL')
      expect(stderr).to.contain('amqp')
      expect(stderr).not.to.contain('s3cret-pw')
    })

    it('an unreachable broker is reported with its address, password masked', async function () {
      const port = await closedPort()
      const stderr = await failure(['consumer', '--handlers', 'test/fixtures/cli-handlers', '--broker', 'redis'], { REDIS_URL: `redis://:s3cret-pw@127.0.0.1:${port}` })
      expect(stderr).to.contain(`127.0.0.1:${port}`)
      expect(stderr).not.to.contain('s3cret-pw')
    })

    it('HERALD_DEBUG=1 adds the stack trace', async function () {
      const { code, stderr } = await herald(['consumer', '--handlers', 'test/fixtures/no-handler'], { HERALD_DEBUG: '1' }).exited()
      expect(code).to.equal(1)
      expect(stderr).to.contain('herald: handler module test/fixtures/no-handler/helpers.js exports no handler')
      expect(stderr).to.match(/\n\s+at loadHandler(s|Modules) /)
    })
  })

  describe('herald consumer', function () {
    const FIXTURE = ['consumer', '--handlers', 'test/fixtures/cli-handlers']
    const AUDIT = 'herald: consuming orders.created, user.created in group audit (handler audit) on memory'
    const BILLING = 'herald: consuming orders.created in group billing (handler chargeCard) on memory'
    const welcome = (group: string): string => `herald: consuming user.created in group ${group} (handler sendWelcome) on memory`

    it('prints one line per consumer with its topics, group and handler, then ready; SIGTERM stops it gracefully, exit 0', async function () {
      const h = herald([...FIXTURE, '--broker', 'memory'])
      await h.printed('herald: ready\n')
      expect(lines(h.stdout)).to.deep.equal([AUDIT, BILLING, welcome('herald'), 'herald: ready'])
      h.child.kill('SIGTERM')
      const { code, stdout, stderr } = await h.exited()
      expect(code).to.equal(0)
      expect(lines(stdout).slice(-2)).to.deep.equal(['herald: stopping…', 'herald: stopped'])
      expect(stderr).to.equal('')
    })

    it('SIGTERM while it is still connecting to a broker that does not answer stops it at once, exit 0', async function () {
      const server = await new SilentServer().listen()
      try {
        const h = herald([...FIXTURE, '--broker', 'rabbitmq'], { RABBITMQ_URL: `amqp://127.0.0.1:${server.port}` })
        // It is connecting once the server has its connection.
        while (server.accepted === 0) {
          if (!h.running) throw new Error(`herald exited before connecting\n${h.stderr}`)
          await new Promise(resolve => setTimeout(resolve, 20))
        }
        h.child.kill('SIGTERM')
        const { code, stdout, stderr } = await h.exited()
        expect(code, stderr).to.equal(0)
        expect(lines(stdout)).to.deep.equal(['herald: stopping…', 'herald: stopped'])
        expect(stderr).to.equal('')
      } finally {
        await server.close()
      }
    })

    it('SIGINT stops it gracefully too', async function () {
      const h = herald([...FIXTURE, '--broker', 'memory'])
      await h.printed('herald: ready\n')
      h.child.kill('SIGINT')
      const { code, stdout } = await h.exited()
      expect(code).to.equal(0)
      expect(lines(stdout).slice(-2)).to.deep.equal(['herald: stopping…', 'herald: stopped'])
    })

    it('--group is the group of handlers that name none; the others keep theirs', async function () {
      const h = herald([...FIXTURE, '--group', 'mailers'])
      await h.printed('herald: ready\n')
      expect(lines(h.stdout)).to.deep.equal([AUDIT, BILLING, welcome('mailers'), 'herald: ready'])
    })

    it('without --group, SERVICE_NAME is the group of handlers that name none', async function () {
      const h = herald(FIXTURE, { SERVICE_NAME: 'shop' })
      await h.printed('herald: ready\n')
      expect(lines(h.stdout)).to.contain(welcome('shop'))
    })

    it('--topic narrows to the consumers of that topic, and a consumer to that topic', async function () {
      const h = herald([...FIXTURE, '--topic', 'user.created'])
      await h.printed('herald: ready\n')
      expect(lines(h.stdout)).to.deep.equal([
        'herald: consuming user.created in group audit (handler audit) on memory',
        welcome('herald'),
        'herald: ready'
      ])
    })

    it('--topic can be repeated', async function () {
      const h = herald([...FIXTURE, '--topic', 'user.created', '--topic', 'orders.created'])
      await h.printed('herald: ready\n')
      expect(lines(h.stdout)).to.deep.equal([AUDIT, BILLING, welcome('herald'), 'herald: ready'])
    })

    it('MESSAGING_BROKER picks the broker when --broker is not given', async function () {
      const h = herald(FIXTURE, { MESSAGING_BROKER: 'memory', REDIS_URL: 'redis://127.0.0.1:1' })
      await h.printed('herald: ready\n')
      expect(h.stdout).to.contain(BILLING)
    })

    it('--broker overrides MESSAGING_BROKER', async function () {
      const h = herald([...FIXTURE, '--broker', 'memory'], { MESSAGING_BROKER: 'kafka' })
      await h.printed('herald: ready\n')
      expect(h.stdout).to.contain(BILLING)
    })

    it('loads TypeScript handlers when started with a TypeScript loader, as the usage says', async function () {
      const h = herald(['consumer', '--handlers', 'test/fixtures/handlers'], { NODE_OPTIONS: '--import tsx' })
      await h.printed('herald: ready\n', 20_000)
      expect(lines(h.stdout)).to.contain('herald: consuming orders.paid in group shipping (handler ShippingConsumer) on memory')
      expect(lines(h.stdout)).to.have.length(6)
    })

    it('SIGTERM lets a running handler finish before it exits', async function () {
      const h = herald(['consumer', '--handlers', 'test/fixtures/cli-drain'], { FIXTURE_JOB_MS: '1500' })
      await h.printed('herald: ready\n')
      await h.printed('fixture: started job 1\n')
      h.child.kill('SIGTERM')
      const { code, stdout } = await h.exited()
      expect(code).to.equal(0)
      expect(lines(stdout).slice(-3)).to.deep.equal(['herald: stopping…', 'fixture: finished job 1', 'herald: stopped'])
    })

    it('a second signal while stopping exits 1 at once, without waiting for running handlers', async function () {
      const h = herald(['consumer', '--handlers', 'test/fixtures/cli-drain', '--shutdown-timeout', '60000'], { FIXTURE_JOB_MS: '60000' })
      await h.printed('fixture: started job 1\n')
      await h.printed('herald: ready\n')
      h.child.kill('SIGTERM')
      await h.printed('herald: stopping…\n')
      h.child.kill('SIGINT')
      const { code, stdout, stderr } = await h.exited(3_000)
      expect(code).to.equal(1)
      expect(stdout).not.to.contain('finished job')
      expect(stdout).not.to.contain('herald: stopped')
      expect(stderr).to.equal('herald: SIGINT while stopping; exiting without waiting for running handlers\n')
    })
  })
  describe('herald consumer --http-port through a SIGTERM drain', function () {
    async function get (port: number, path: string): Promise<{ status: number, type: string | null, body: string }> {
      const res = await fetch(`http://127.0.0.1:${port}${path}`)
      return { status: res.status, type: res.headers.get('content-type'), body: await res.text() }
    }

    for (const kind of ['redis', 'rabbitmq'] as const satisfies readonly BrokerKind[]) {
      it(`${kind}: /livez and /readyz 200 when ready, /metrics in Prometheus text; on SIGTERM with a message in flight /readyz 503 and /livez 200 until the handler finishes, exit 0, the message acknowledged`, async function () {
        if (!brokerSelected(kind)) this.skip()
        const topic = randomName()
        const group = randomName('g')
        // The CLI uses no Redis key prefix: this side neither, to see the same stream.
        const options = kind === 'redis' ? { ...brokerOptions(kind), redis: {} } : brokerOptions(kind)
        const dir = await mkdtemp(join(tmpdir(), 'herald-hold-'))
        const release = join(dir, 'release')
        const producer = createMessaging(options)
        try {
          const port = await closedPort()
          const h = herald(['consumer', '--handlers', 'test/fixtures/cli-hold', '--broker', kind, '--http-port', String(port)], {
            [kind === 'redis' ? 'REDIS_URL' : 'RABBITMQ_URL']: String(options.url), FIXTURE_TOPIC: topic, FIXTURE_GROUP: group, FIXTURE_RELEASE: release
          })
          await h.printed('herald: ready\n', 20_000)
          expect(await get(port, '/livez')).to.deep.include({ status: 200, body: JSON.stringify({ status: 'alive', state: 'ready' }) })
          expect(await get(port, '/readyz')).to.deep.include({ status: 200, body: JSON.stringify({ status: 'ready', state: 'ready' }) })
          const metrics = await get(port, '/metrics')
          expect(metrics.status).to.equal(200)
          expect(metrics.type).to.match(/^text\/plain/)
          expect(metrics.body).to.match(/^# HELP herald_published_messages_total /m)

          await producer.publishEvent('job.requested', { id: 1 }, { topic })
          await h.printed('fixture: holding job 1\n', 20_000)
          expect(await get(port, '/metrics')).to.have.property('body').that.contains(`herald_in_flight_messages{group="${group}"} 1`)
          h.child.kill('SIGTERM')
          await h.printed('herald: stopping…\n')
          expect(await get(port, '/readyz')).to.deep.include({ status: 503, body: JSON.stringify({ status: 'not ready', state: 'draining' }) })
          expect(await get(port, '/livez')).to.deep.include({ status: 200, body: JSON.stringify({ status: 'alive', state: 'draining' }) })
          expect(h.running).to.equal(true)

          await writeFile(release, '')
          const { code, stdout, stderr } = await h.exited(20_000)
          expect(code, stderr).to.equal(0)
          expect(lines(stdout).slice(-3)).to.deep.equal(['herald: stopping…', 'fixture: released job 1', 'herald: stopped'])
          // Acknowledged: nothing of the group is left at the broker (Redis: no pending entry; RabbitMQ:
          // an unacknowledged message would be back in the queue once the worker's connection closed).
          const broker = await producer.broker()
          expect(await broker.lag!(group, [topic])).to.deep.equal([{ topic, messages: 0 }])
        } finally {
          await producer.close()
          await rm(dir, { recursive: true, force: true })
          await cleanUpRun(kind, [`${topic}.${group}`, `${topic}.${group}.dlq`])
        }
      })
    }
  })
})
