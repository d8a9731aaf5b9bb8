// A redis-server of a test's (or the fault harness's) own, so that it can be killed and
// started again without touching the machine's shared Redis.
import { startChild, waitForPort, type Child } from './processes.js'

/**
 * Starts redis-server on 127.0.0.1:`port` with append-only persistence fsynced on every
 * write in `dir` (a SIGKILL loses nothing it acknowledged; started again on the same `dir`,
 * its streams and groups come back), its log in `logFile`. Resolves once it answers.
 */
export async function startRedisServer (port: number, dir: string, logFile: string): Promise<Child> {
  const server = startChild('redis-server', 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes',
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--dir', dir,
    '--daemonize', 'no', '--logfile', ''
  ], { logFile })
  await waitForPort(port, 20_000, 'redis-server')
  return server
}
