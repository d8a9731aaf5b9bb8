import { createServer, type Server, type Socket } from 'node:net'

/** A loopback TCP server that accepts every connection and never writes a byte. */
export class SilentServer {
  readonly #server: Server
  readonly sockets = new Set<Socket>()
  accepted = 0
  port = 0

  constructor () {
    this.#server = createServer(socket => {
      this.accepted++
      this.sockets.add(socket)
      socket.on('error', () => {})
      // Read and drop what the client sends, so that its closing is seen.
      socket.resume()
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  async listen (): Promise<this> {
    await new Promise<void>(resolve => this.#server.listen(0, '127.0.0.1', resolve))
    this.port = (this.#server.address() as { port: number }).port
    return this
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise(resolve => this.#server.close(resolve))
  }
}
