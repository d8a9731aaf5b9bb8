import type { IHeaders } from 'kafkajs'

/** Header values as strings; a header repeated in one record keeps its last value. */
export function decodeHeaders (headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers === undefined) return out
  for (const [name, raw] of Object.entries(headers)) {
    const value = Array.isArray(raw) ? raw[raw.length - 1] : raw
    if (value === undefined) continue
    // defineProperty: a header named `__proto__` is a plain key, not the object's prototype.
    Object.defineProperty(out, name, { value: typeof value === 'string' ? value : value.toString('utf8'), enumerable: true, writable: true, configurable: true })
  }
  return out
}
