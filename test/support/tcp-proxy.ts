// A loopback TCP proxy for the fault harness: the worker reaches its broker through it, so
// the harness can cut the worker's connections (every socket reset at once) and refuse new
// ones for a while, as a network partition or a load balancer failover would, without
// touching the broker that the service keeps using.
import net from 'node:net'

export interface TcpProxyOptions {
  /** The broker's port on 127.0.0.1. */
  targetPort: number
  /** The proxy's port on 127.0.0.1; 0 picks a free one. */
  port?: number
}

export class TcpProxy {
  readonly #targetPort: number
  readonly #server: net.Server
  readonly #pairs = new Set<{ client: net.Socket, upstream: net.Socket }>()
  #refusingUntil = 0
  #port = 0
  /** Connections reset by `cut()` and refused while refusing, for the report. */
  cuts = 0
  refused = 0

  constructor (options: TcpProxyOptions) {
    this.#targetPort = options.targetPort
    this.#server = net.createServer(client => this.#accept(client))
    this.#port = options.port ?? 0
  }

  get port (): number {
    return this.#port
  }

  async listen (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    this.#port = (this.#server.address() as net.AddressInfo).port
  }

  /** Resets every open connection now, and refuses new ones for `refuseMs`. Returns how many were cut. */
  cut (refuseMs: number): number {
    this.#refusingUntil = Date.now() + refuseMs
    let n = 0
    for (const pair of this.#pairs) {
      pair.client.resetAndDestroy()
      pair.upstream.destroy()
      n++
    }
    this.#pairs.clear()
    this.cuts += n
    return n
  }

  /** Open connections through the proxy. */
  get connections (): number {
    return this.#pairs.size
  }

  async close (): Promise<void> {
    for (const pair of this.#pairs) {
      pair.client.destroy()
      pair.upstream.destroy()
    }
    this.#pairs.clear()
    await new Promise<void>(resolve => this.#server.close(() => resolve()))
  }

  #accept (client: net.Socket): void {
    if (Date.now() < this.#refusingUntil) {
      // As close to "connection refused" as an open listener gets: an immediate reset.
      this.refused++
      client.on('error', () => {})
      client.resetAndDestroy()
      return
    }
    const upstream = net.connect({ host: '127.0.0.1', port: this.#targetPort })
    const pair = { client, upstream }
    this.#pairs.add(pair)
    const end = (): void => {
      this.#pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
