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
  }
  interface Result { '2xx': number, non2xx: number, errors: number, timeouts: number, duration: number }
  function autocannon (options: Options): Promise<Result>
  export default autocannon
}

// @moleculer/channels ships no types: the middleware factory is all the bench uses.
declare module '@moleculer/channels' {
  import type { Middleware } from 'moleculer'
  export function Middleware (options: Record<string, unknown>): Middleware
}
