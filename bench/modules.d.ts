// Types for the packages the bench uses that ship none (only the parts it uses).
declare module 'autocannon' {
  interface Options {
    url: string
    method?: string
    headers?: Record<string, string>
    body?: string
    connections?: number
    amount?: number
    duration?: number
    /** Seconds before a request counts as timed out. */
    timeout?: number
  }
  export interface Result { '2xx': number, non2xx: number, errors: number, timeouts: number, duration: number }
  /** The running load: 'response' is emitted once per answer. */
  interface Instance { on: (event: 'response', listener: () => void) => Instance }
  function autocannon (options: Options): Promise<Result>
  function autocannon (options: Options, done: (err: Error | null | undefined, result: Result) => void): Instance
  export default autocannon
}

// @moleculer/channels ships no types: the middleware factory is all the bench uses.
declare module '@moleculer/channels' {
  import type { Middleware } from 'moleculer'
  export function Middleware (options: Record<string, unknown>): Middleware
}
