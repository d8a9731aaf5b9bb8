// TLS options reach the broker clients: `amqps://` + `rabbitmq.socketOptions`, `rediss://` +
// `redis.client.tls`, Kafka's `kafka.client.ssl`. Each client connects to a TLS server on
// 127.0.0.1 started here, with certificates made for this run by the openssl CLI; the
// server records the handshake (the name asked for, the client's certificate). It speaks
// no broker protocol, so each connection fails once the handshake is done.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import { createMessaging, type MessagingOptions } from '../lib/index.js'

interface Pem {
  ca: Buffer
  otherCa: Buffer
  serverKey: Buffer
  serverCert: Buffer
  clientKey: Buffer
  clientCert: Buffer
}

interface Handshake {
  servername: string | false
  clientCertificate: string | undefined
  authorized: boolean
}

const SERVERNAME = 'broker.test'
const PASSWORD = 'tls-pass-1f9'

function openssl (dir: string, args: string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${run.error?.message ?? run.stderr}`)
}

/** A CA, a server certificate for broker.test and a client certificate signed by it, and an unrelated CA. */
async function makeCertificates (dir: string): Promise<Pem> {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(dir, ['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Herald Test CA'])
  openssl(dir, ['req', '-x509', ...key, '-keyout', 'other-ca.key', '-out', 'other-ca.crt', '-days', '2', '-subj', '/CN=Another CA'])
  await writeFile(join(dir, 'server.ext'), `subjectAltName=DNS:${SERVERNAME}\n`)
  openssl(dir, ['req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${SERVERNAME}`])
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext'])
  openssl(dir, ['req', ...key, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=herald-client'])
  openssl(dir, ['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2'])
  const read = async (name: string): Promise<Buffer> => await readFile(join(dir, name))
  return {
    ca: await read('ca.crt'),
    otherCa: await read('other-ca.crt'),
    serverKey: await read('server.key'),
    serverCert: await read('server.crt'),
    clientKey: await read('client.key'),
    clientCert: await read('client.crt')
  }
}

/** TLS client options as each client library takes them. */
interface TlsClientOptions {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  servername?: string
}

interface TlsCase {
  kind: 'rabbitmq' | 'redis' | 'kafka'
  /** How the user asks for TLS with these client options. */
  options: (port: number, tls: TlsClientOptions) => MessagingOptions
  /** TLS asked for with no client options: the system's CAs, which do not know the test CA. */
  bare: (port: number) => MessagingOptions
  describe: string
}

const cases: TlsCase[] = [
  {
    kind: 'rabbitmq',
    describe: 'amqps:// with rabbitmq.socketOptions',
    options: (port, tls) => ({ broker: 'rabbitmq', url: `amqps://herald:${PASSWORD}@127.0.0.1:${port}`, rabbitmq: { socketOptions: { ...tls, timeout: 5000 } } }),
    bare: (port) => ({ broker: 'rabbitmq', url: `amqps://herald:${PASSWORD}@127.0.0.1:${port}` })
  },
  {
    kind: 'redis',
    describe: 'rediss:// with redis.client.tls',
    options: (port, tls) => ({ broker: 'redis', url: `rediss://:${PASSWORD}@127.0.0.1:${port}`, redis: { client: { tls } } }),
    bare: (port) => ({ broker: 'redis', url: `rediss://:${PASSWORD}@127.0.0.1:${port}` })
  },
  {
    kind: 'kafka',
    describe: 'kafka.client.ssl',
    options: (port, tls) => ({ broker: 'kafka', bootstrapServers: `127.0.0.1:${port}`, kafka: { client: { ssl: tls, retry: { retries: 1, initialRetryTime: 50 }, connectionTimeout: 3000 } } }),
    bare: (port) => ({ broker: 'kafka', bootstrapServers: `127.0.0.1:${port}`, kafka: { client: { ssl: true, retry: { retries: 1, initialRetryTime: 50 }, connectionTimeout: 3000 } } })
  }
]

/** Connects and returns the error (every connection here fails, after or during the handshake). */
async function connectError (options: MessagingOptions): Promise<Error> {
  const m = createMessaging({ ...options, logger: false })
  try {
    await m.connect()
  } catch (err) {
    return err as Error
  } finally {
    await m.close()
  }
  throw new Error('expected the connection to fail: the test server speaks no broker protocol')
}

describe('TLS options reach the broker client', function () {
  this.timeout(20_000)
  let dir: string
  let pem: Pem
  let server: Server
  let port: number
  const handshakes: Handshake[] = []
  const refusals: string[] = []

  before(async function () {
    const version = spawnSync('openssl', ['version'], { encoding: 'utf8' })
    if (version.status !== 0) throw new Error('these tests make their certificates with the openssl CLI: install openssl')
    dir = await mkdtemp(join(tmpdir(), 'herald-tls-'))
    pem = await makeCertificates(dir)
    server = createServer({ key: pem.serverKey, cert: pem.serverCert, ca: pem.ca, requestCert: true, rejectUnauthorized: false }, (socket: TLSSocket) => {
      const cn = socket.getPeerCertificate()?.subject?.CN
      handshakes.push({
        servername: (socket as TLSSocket & { servername: string | false }).servername,
        clientCertificate: Array.isArray(cn) ? cn.join(',') : cn,
        authorized: socket.authorized
      })
      socket.destroy()
    })
    server.on('tlsClientError', (err) => { refusals.push(err.message) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  beforeEach(function () {
    handshakes.length = 0
    refusals.length = 0
  })

  after(async function () {
    await new Promise<void>(resolve => server.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  })

  for (const c of cases) {
    describe(`${c.kind}: ${c.describe}`, function () {
      it('the handshake uses the given servername, presents the client certificate and trusts the given CA', async function () {
        const err = await connectError(c.options(port, { ca: pem.ca, cert: pem.clientCert, key: pem.clientKey, servername: SERVERNAME }))
        expect(handshakes.length, 'TLS handshakes the server completed').to.be.at.least(1)
        expect(handshakes[0]).to.deep.equal({ servername: SERVERNAME, clientCertificate: 'herald-client', authorized: true })
        expect(err.message).not.to.match(/certificate/i)
        expect(err.message).not.to.contain(PASSWORD)
      })

      it('a server certificate that the given CA did not sign is refused with a certificate error', async function () {
        const err = await connectError(c.options(port, { ca: pem.otherCa, servername: SERVERNAME }))
        expect(err.message).to.match(/certificate/i)
        expect(err.message).not.to.contain(PASSWORD)
        // A late retry of the previous test's client (it presents a client certificate)
        // may still land here; this client presents none.
        expect(handshakes.filter(h => h.clientCertificate === undefined)).to.have.length(0)
      })

      it('TLS is on without client options too, checked against the system CAs', async function () {
        const err = await connectError(c.bare(port))
        expect(err.message).to.match(/certificate/i)
        expect(handshakes.filter(h => h.clientCertificate === undefined)).to.have.length(0)
      })
    })
  }
})
