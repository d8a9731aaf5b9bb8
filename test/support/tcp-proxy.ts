// The one loopback TCP proxy of the fault tests (test/faults) and the fault harness
// (scripts/faults): a client reaches its broker through it, so a test can cut the client's
// connections (every socket reset at once) and refuse new ones for a while, as a network
// partition or a load balancer failover would, without touching the broker itself.
import net from 'node:net'

export interface TcpProxyOptions {
  /** The broker's port on 127.0.0.1. */
  targetPort: number
  /** The proxy's port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number
}

export class TcpProxy {
  readonly #targetPort: number
  readonly #server: net.Server
  readonly #pairs = new Set<{ client: net.Socket, upstream: net.Socket }>()
  #refusingUntil = 0
  #refusing = false
  #port: number
  /** Connections forwarded to the broker. */
  accepted = 0
  /** Connections reset by `cut()`. */
  cuts = 0
  /** Connections refused (reset as soon as accepted) while refusing: how often a client tried. */
  refused = 0

  constructor (options: TcpProxyOptions) {
    this.#targetPort = options.targetPort
    this.#server = net.createServer(client => this.#accept(client))
    this.#port = options.port ?? 0
  }

  get port (): number {
    return this.#port
  }

  /** Open connections through the proxy. */
  get connections (): number {
    return this.#pairs.size
  }

  /** Starts listening; resolves with the port. */
  async listen (): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    this.#port = (this.#server.address() as net.AddressInfo).port
    return this.#port
  }

  /**
   * Resets every open connection now and refuses new ones for `refuseMs` (or, with
   * `'until resumed'`, until `resume()`). Returns how many were cut.
   */
  cut (refuse: number | 'until resumed' = 0): number {
    if (refuse === 'until resumed') this.#refusing = true
    else this.#refusingUntil = Date.now() + refuse
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

  /** Accepts connections again (ends a refusal `cut('until resumed')` began). */
  resume (): void {
    this.#refusing = false
    this.#refusingUntil = 0
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
    if (this.#refusing || Date.now() < this.#refusingUntil) {
      // As close to "connection refused" as an open listener gets: an immediate reset.
      this.refused++
      client.on('error', () => {})
      client.resetAndDestroy()
      return
    }
    this.accepted++
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
