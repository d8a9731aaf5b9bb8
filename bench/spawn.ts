// Starting a contender in a fresh child process and reading its READY / RESULT lines.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { READY_PREFIX, RESULT_PREFIX, TASK_ENV, type Task } from './common.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url))
/** A contender that has not answered by then is stuck: it is killed and the measure fails. */
const CHILD_TIMEOUT_MS = 180_000

export interface Child {
  /** Resolves when the child printed BENCH_READY (a consumer is subscribed), with what it said. */
  ready: Promise<unknown>
  /** Resolves with the child's BENCH_RESULT; rejects (with its stderr) when it exits without one. */
  result: Promise<any>
  process: ChildProcess
}

export function startChild (task: Task): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, [TASK_ENV]: JSON.stringify(task), HERALD_LOG_LEVEL: 'silent', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  let buffer = ''
  let onReady: (v: unknown) => void = () => {}
  let notReady: (err: Error) => void = () => {}
  let onResult: (v: unknown) => void = () => {}
  let result: unknown
  const ready = new Promise<unknown>((resolve, reject) => { onReady = resolve; notReady = reject })
  child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000) })
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line.startsWith(READY_PREFIX)) onReady(JSON.parse(line.slice(READY_PREFIX.length)))
      else if (line.startsWith(RESULT_PREFIX)) onResult(result = JSON.parse(line.slice(RESULT_PREFIX.length)))
    }
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
  const resultPromise = new Promise<any>((resolve, reject) => {
    onResult = resolve
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const what = `${task.contender} (${task.role}, ${task.broker}) exited with ${signal ?? code}`
      if (result === undefined) {
        const err = new Error(`${what} without a result:\n${stderr}`)
        notReady(err)
        reject(err)
      }
    })
  })
  // Whoever awaits these sees the failure; one nobody awaits (a consumer whose producer never
  // started) must not end the runner as an unhandled rejection.
  void ready.catch(() => {})
  void resultPromise.catch(() => {})
  return { ready, result: resultPromise, process: child }
}
