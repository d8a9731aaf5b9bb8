// The one process control of the fault tests (test/faults) and the fault harness
// (scripts/faults): children started with their output in a log file or on pipes, tracked so
// that every one of them can be killed at once (`killAll()` after a test; on exit, however
// the harness exits), stopped with a grace period, waited for.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { settledWithin, withTimeout } from '../../lib/time.js'
import { sleep } from '../helpers.js'

export { sleep }

const live = new Set<ChildProcess>()
/** Children started as the leader of their own process group (killed as a group). */
const grouped = new WeakSet<ChildProcess>()
/** Synchronous clean-ups run from the 'exit' handler (kill a detached broker, remove a dir). */
const lastResorts = new Map<string, () => void>()

/** Runs `fn` when the process exits, whatever the way; remove it with the returned function. */
export function onExit (name: string, fn: () => void): () => void {
  lastResorts.set(name, fn)
  return () => { lastResorts.delete(name) }
}

/** Sends `signal` to a child, or to its whole process group when it leads one. */
function signal (child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(grouped.has(child) ? -child.pid : child.pid, sig)
  } catch {}
}

function killEverything (): void {
  for (const child of live) signal(child, 'SIGKILL')
  live.clear()
  // Last registered first: a broker's clean-up needs its files before the temp dir goes.
  for (const fn of [...lastResorts.values()].reverse()) {
    try { fn() } catch {}
  }
  lastResorts.clear()
}

let installed = false
/** Kills every child and runs every clean-up on exit, on SIGINT / SIGTERM / SIGHUP, and on an uncaught error. */
export function installExitHandlers (): void {
  if (installed) return
  installed = true
  process.on('exit', killEverything)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`faults: ${signal}; killing every child and cleaning up\n`)
      killEverything()
      process.exit(130)
    })
  }
}

export interface Child {
  readonly process: ChildProcess
  readonly name: string
  /** Where its output goes; undefined when it is on `process.stdout` and `process.stderr` (pipes). */
  readonly logFile: string | undefined
  /** Resolves with the exit code (or signal) once the child exited. */
  readonly exited: Promise<string>
}

/**
 * Starts a child with stdout and stderr appended to `logFile`, or on pipes when there is
 * none. With `ipc`, an IPC channel is opened (a node child then exits when the harness goes
 * away). `group` starts it in a process group of its own, killed as a whole.
 */
export function startChild (name: string, command: string, args: string[], options: { logFile?: string, env?: NodeJS.ProcessEnv, ipc?: boolean, group?: boolean, cwd?: string } = {}): Child {
  const fd = options.logFile === undefined ? undefined : openSync(options.logFile, 'a')
  const out = fd ?? 'pipe'
  const spawnOptions: SpawnOptions = {
    stdio: options.ipc === true ? ['ignore', out, out, 'ipc'] : ['ignore', out, out],
    env: options.env ?? process.env,
    detached: options.group === true,
    cwd: options.cwd
  }
  const child = spawn(command, args, spawnOptions)
  if (fd !== undefined) closeSync(fd)
  if (options.group === true) grouped.add(child)
  live.add(child)
  const exited = new Promise<string>(resolve => {
    child.once('exit', (code, signal) => {
      live.delete(child)
      resolve(signal ?? String(code))
    })
    child.once('error', (err) => {
      live.delete(child)
      resolve(`error: ${err.message}`)
    })
  })
  return { process: child, name, logFile: options.logFile, exited }
}

/** Waits for the child's first IPC message with `ready: true`; rejects if it exits first or `timeoutMs` passes. */
export async function waitReady<T extends { ready: boolean }> (child: Child, timeoutMs: number): Promise<T> {
  let onMessage: ((m: unknown) => void) | undefined
  const ready = Promise.race([
    new Promise<T>(resolve => {
      onMessage = (m: unknown) => { if (typeof m === 'object' && m !== null && (m as T).ready) resolve(m as T) }
      child.process.on('message', onMessage)
    }),
    child.exited.then(how => { throw new Error(`${child.name} exited (${how}) before it was ready; its log:\n${tail(child.logFile)}`) })
  ])
  try {
    return await withTimeout(ready, timeoutMs, () => new Error(`${child.name} not ready after ${timeoutMs} ms; its log:\n${tail(child.logFile)}`))
  } finally {
    if (onMessage !== undefined) child.process.off('message', onMessage)
  }
}

/** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs. Resolves with how it exited. */
export async function stopChild (child: Child, sig: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<string> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return await child.exited
  signal(child.process, sig)
  if (await settledWithin(child.exited, graceMs, { keepAlive: true })) return await child.exited
  signal(child.process, 'SIGKILL')
  return `${await child.exited} (SIGKILL after ${graceMs} ms)`
}

/** SIGKILLs every child still running (after a test) and waits until each has exited. */
export async function killAll (): Promise<void> {
  const children = [...live]
  const exits = children.map(async child => await new Promise<void>(resolve => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  }))
  for (const child of children) signal(child, 'SIGKILL')
  await Promise.all(exits.map(async exit => await settledWithin(exit, 5_000)))
}

/** The last lines of a log file, for an error message. */
export function tail (file: string | undefined, lines = 30): string {
  if (file === undefined) return '(output on pipes)'
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** `n` distinct free TCP ports on 127.0.0.1 (free when asked; good enough for a broker started right after). */
export async function freePorts (n: number): Promise<number[]> {
  // All held open at once, so the kernel cannot hand out the same port twice.
  const servers = await Promise.all(Array.from({ length: n }, async () => await new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })))
  const ports = servers.map(server => (server.address() as net.AddressInfo).port)
  await Promise.all(servers.map(async server => await new Promise(resolve => server.close(resolve))))
  return ports
}

/** Resolves once 127.0.0.1:port accepts a connection, or rejects after `timeoutMs`. */
export async function waitForPort (port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const open = await new Promise<boolean>(resolve => {
      const socket = net.connect({ host: '127.0.0.1', port })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { socket.destroy(); resolve(false) })
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`${what} did not open 127.0.0.1:${port} within ${timeoutMs} ms`)
    await sleep(100)
  }
}

/** Runs a command to completion (bounded), returning its output; throws on a non-zero exit. */
export function run (command: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number, cwd?: string } = {}): string {
  const result = spawnSync(command, args, { env: options.env ?? process.env, encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, cwd: options.cwd })
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`
  if (result.error !== undefined) throw new Error(`${command} ${args.join(' ')}: ${result.error.message}\n${output}`)
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status ?? result.signal}:\n${output}`)
  return output
}

/** Async version of `run` (does not block the event loop: the load keeps flowing while a broker restarts). */
export async function runAsync (command: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number, cwd?: string } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    live.add(child)
    let output = ''
    child.stdout?.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { output += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
    child.once('error', (err) => { clearTimeout(timer); live.delete(child); reject(new Error(`${command}: ${err.message}`)) })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      live.delete(child)
      if (code === 0) resolve(output)
      else reject(new Error(`${command} ${args.join(' ')} exited ${code ?? signal}:\n${output}`))
    })
  })
}
