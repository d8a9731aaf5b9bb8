import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withTimeout } from '../../lib/time.js'
import { killAll, startChild } from '../support/processes.js'
import type { WorkerConfig, WorkerLine } from './worker.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url))

export interface WorkerExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** When the process was seen to end (epoch ms). */
  at: number
}

/**
 * A `test/faults/worker.ts` child process (started and tracked by test/support/processes.ts)
 * and what it printed, parsed.
 */
export class WorkerProcess {
  readonly child: ChildProcess
  readonly lines: WorkerLine[] = []
  /** When each line arrived here (this process's clock: the worker's `t` may be off by a few ms). */
  readonly receivedAt = new Map<WorkerLine, number>()
  readonly name: string
  stderr = ''
  #partial = ''
  readonly #exit: Promise<WorkerExit>
  exit: WorkerExit | undefined

  constructor (name: string, config: WorkerConfig) {
    this.name = name
    this.child = startChild(`worker ${name}`, process.execPath, ['--import', 'tsx', SCRIPT], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HERALD_FAULT_WORKER: JSON.stringify(config) }
    }).process
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const text = this.#partial + chunk
      const parts = text.split('\n')
      this.#partial = parts.pop() ?? ''
      for (const part of parts) {
        if (part.trim() === '') continue
        try {
          const line = JSON.parse(part) as WorkerLine
          this.lines.push(line)
          this.receivedAt.set(line, Date.now())
        } catch {
          this.stderr += `(stdout) ${part}\n`
        }
      }
    })
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    this.#exit = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.exit = { code, signal, at: Date.now() }
        resolve(this.exit)
      })
    })
  }

  get pid (): number {
    return this.child.pid ?? -1
  }

  get running (): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  of (ev: WorkerLine['ev']): WorkerLine[] {
    return this.lines.filter(l => l.ev === ev)
  }

  /** Ids whose handler attempt started here. */
  started (): Set<string> {
    return new Set(this.of('start').map(l => l.id!))
  }

  /** Ids whose handler attempt finished successfully here. */
  finished (): Set<string> {
    return new Set(this.of('done').map(l => l.id!))
  }

  /** Resolves once `check` holds for the lines printed so far; fails if the worker exits first or after `timeout` ms. */
  async until (check: (w: WorkerProcess) => boolean, what: string, timeout = 20_000, every = 10): Promise<void> {
    const deadline = Date.now() + timeout
    while (!check(this)) {
      if (!this.running) throw new Error(`worker ${this.name} exited (${JSON.stringify(this.exit ?? {})}) before ${what}${this.describe()}`)
      if (Date.now() > deadline) throw new Error(`worker ${this.name}: ${what} did not happen within ${timeout} ms${this.describe()}`)
      await new Promise(resolve => setTimeout(resolve, every))
    }
  }

  /** Handler attempts started here and not ended (done, failed or aborted) yet. */
  runningAttempts (): WorkerLine[] {
    return this.of('start').filter(s => !this.lines.some(l => (l.ev === 'done' || l.ev === 'fail' || l.ev === 'aborted') && l.id === s.id && l.attempt === s.attempt))
  }

  async ready (timeout = 30_000): Promise<void> {
    await this.until(w => w.of('ready').length > 0, 'ready', timeout)
  }

  kill (signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal)
  }

  /** Resolves once the process ended; fails after `timeout` ms. */
  async exited (timeout = 20_000): Promise<WorkerExit> {
    return await withTimeout(this.#exit, timeout, () => new Error(`worker ${this.name} still running ${timeout} ms later${this.describe()}`))
  }

  /** The last lines and stderr, for a failure message. */
  describe (): string {
    const tail = this.lines.slice(-30).map(l => JSON.stringify(l)).join('\n')
    return `\n--- ${this.name} (pid ${this.pid}) last lines ---\n${tail}\n--- stderr ---\n${this.stderr.slice(-3000)}`
  }

  /** SIGKILLs every worker (every child the tests started) still running and waits for them to end. */
  static async killAll (): Promise<void> {
    await killAll()
  }
}
