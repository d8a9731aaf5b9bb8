// The part of autocannon's API the bench uses (the package ships no types).
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
