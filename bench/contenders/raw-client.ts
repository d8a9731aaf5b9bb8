/** What each hand-written raw-client contender provides: a producer and a consumer loop. */
export interface RawClient {
  /** Sends one message and resolves once the broker acknowledged it (sends made together are coalesced). */
  send: (topic: string, key: string, body: Buffer, headers: Record<string, string> | undefined) => Promise<void>
  /** Starts consuming `topic` in `group`; `handle` runs for each message body before it is acknowledged. Resolves once ready. */
  consume: (topic: string, group: string, handle: (body: Buffer) => void) => Promise<void>
  close: () => Promise<void>
}
