import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A free TCP port on 127.0.0.1 (free when asked; good enough for a test). */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()))
  const address = server.address()
  await new Promise<void>(resolve => server.close(() => resolve()))
  if (address === null || typeof address !== 'object') throw new Error('no port')
  return address.port
}

async function answers (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/**
 * A redis-server of the test's own, on a free loopback port, with append-only persistence
 * fsynced on every write in a temporary directory: it can be stopped and started again
 * (the streams and their groups come back from the AOF) without touching the machine's
 * shared Redis.
 */
export class PrivateRedis {
  readonly port: number
  readonly dir: string
  #process: ChildProcess | undefined
  log = ''

  private constructor (port: number, dir: string) {
    this.port = port
    this.dir = dir
  }

  static async start (): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort(), await mkdtemp(join(tmpdir(), 'herald-faults-redis-')))
    await redis.startServer()
    return redis
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async startServer (): Promise<void> {
    if (this.#process !== undefined) return
    const child = spawn('redis-server', [
      '--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'always', '--dir', this.dir, '--daemonize', 'no'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.setEncoding('utf8').on('data', (s: string) => { this.log = (this.log + s).slice(-5000) })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { this.log = (this.log + s).slice(-5000) })
    this.#process = child
    const deadline = Date.now() + 10_000
    while (!await answers(this.port)) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}):\n${this.log}`)
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${this.port} within 10 s:\n${this.log}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  /** Stops the server (SIGKILL: a crash; the AOF, fsynced on every write, keeps what was written). */
  async stopServer (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#process
    this.#process = undefined
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const ended = new Promise(resolve => child.once('exit', resolve))
    child.kill(signal)
    await ended
  }

  async destroy (): Promise<void> {
    await this.stopServer()
    await rm(this.dir, { recursive: true, force: true })
  }
}
