import { createServer, connect, type Server, type Socket } from 'node:net'

/**
 * A loopback TCP proxy for the fault tests: listens on 127.0.0.1 and forwards every
 * connection to a broker on this machine. `cut()` drops every connection at once (a
 * network failure as the client sees it); `pause()` refuses new connections until
 * `resume()` (a broker that is down), on the same port; `drop()` accepts them and closes
 * them at once, counting them (`dropped`), to see how often a client tries.
 */
export class TcpProxy {
  readonly #targetPort: number
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  #port = 0
  /** Connections accepted so far. */
  accepted = 0
  /** Connections closed at once while dropping. */
  dropped = 0
  #dropping = false

  constructor (targetPort: number) {
    this.#targetPort = targetPort
  }

  get port (): number {
    return this.#port
  }

  /** Starts listening (on a free port the first time, then on the same one). */
  async start (): Promise<number> {
    const server = createServer((client) => {
      if (this.#dropping) {
        this.dropped++
        client.on('error', () => {})
        client.destroy()
        return
      }
      this.accepted++
      const upstream = connect({ host: '127.0.0.1', port: this.#targetPort })
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('close', () => this.#sockets.delete(s))
        s.on('error', () => { client.destroy(); upstream.destroy() })
      }
      client.pipe(upstream)
      upstream.pipe(client)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: '127.0.0.1', port: this.#port }, () => resolve())
    })
    this.#server = server
    const address = server.address()
    if (address !== null && typeof address === 'object') this.#port = address.port
    return this.#port
  }

  /** Drops every open connection, both ways. */
  cut (): void {
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
  }

  /** Stops accepting: new connections are refused until `resume()`. Open ones are left as they are. */
  async pause (): Promise<void> {
    const server = this.#server
    this.#server = undefined
    // close() stops listening at once; its callback would wait for the open connections.
    server?.close()
    await new Promise(resolve => setImmediate(resolve))
  }

  /** Accepts new connections and closes them at once (counted in `dropped`) until `resume()`. */
  drop (): void {
    this.#dropping = true
  }

  async resume (): Promise<void> {
    this.#dropping = false
    if (this.#server === undefined) await this.start()
  }

  async close (): Promise<void> {
    this.cut()
    await this.pause()
  }
}
