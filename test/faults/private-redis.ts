import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts, stopChild, type Child } from '../support/processes.js'
import { startRedisServer } from '../support/redis-server.js'

/**
 * A redis-server of the test's own, on a free loopback port, with its data in a temporary
 * directory: it can be stopped and started again (the streams and their groups come back
 * from the AOF) without touching the machine's shared Redis.
 */
export class PrivateRedis {
  readonly port: number
  readonly dir: string
  #server: Child | undefined

  private constructor (port: number, dir: string) {
    this.port = port
    this.dir = dir
  }

  static async start (): Promise<PrivateRedis> {
    const [port] = await freePorts(1)
    const redis = new PrivateRedis(port!, await mkdtemp(join(tmpdir(), 'herald-faults-redis-')))
    await redis.startServer()
    return redis
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async startServer (): Promise<void> {
    this.#server ??= await startRedisServer(this.port, this.dir, join(this.dir, 'redis.log'))
  }

  /** Stops the server (SIGKILL: a crash; the AOF, fsynced on every write, keeps what was written). */
  async stopServer (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server !== undefined) await stopChild(server, signal, 5_000)
  }

  async destroy (): Promise<void> {
    await this.stopServer()
    await rm(this.dir, { recursive: true, force: true })
  }
}
