import { checkKnownKeys, checkObject, checkPositiveInt } from '../config-checks.js'

/** Options of the embedded broker, under `memory` in the messaging options. */
export interface MemoryOptions {
  /**
   * Entries kept per topic once every group has acknowledged them, so that a group
   * created later still finds recent history. Entries a group has not acknowledged are
   * never dropped. Default 10000.
   */
  retain?: number
}

export interface MemorySettings {
  retain: number
}

export function resolveMemorySettings (options: MemoryOptions | undefined): MemorySettings {
  checkKnownKeys('memory', checkObject('memory', options), ['retain'])
  return { retain: options?.retain === undefined ? 10_000 : checkPositiveInt('memory.retain', options.retain, { min: 0 }) }
}
