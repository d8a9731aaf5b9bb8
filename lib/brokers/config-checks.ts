import { ConfigError } from '../errors.js'
import { redactUrl } from '../redact.js'

/** The settings of a broker reached by one URL (RabbitMQ, Redis): what its `<kind>-config.ts` resolves. */
export interface UrlBrokerSettings<O> {
  url: string
  /** The adapter's options as given (already checked). */
  options: O
  /** How long connecting may take, in ms (the messaging option `connectTimeout`). */
  connectTimeout?: number
}

/** Where a URL broker's address comes from and how it must look. */
export interface BrokerUrlSource {
  /** The environment variable read when the `url` option is not given, e.g. `REDIS_URL`. */
  envVar: string
  /** The URL used when neither is given. */
  fallback: string
  schemes: string[]
  /** The form to show in an error, e.g. `redis://:password@localhost:6379/0`. */
  example: string
}

/**
 * The URL of a broker: the `url` option, else the environment variable, else the fallback;
 * checked. `option` names where it came from, for the errors that follow.
 */
export function resolveBrokerUrl (url: string | undefined, env: NodeJS.ProcessEnv, source: BrokerUrlSource): { option: string, value: string, parsed: URL } {
  const option = url !== undefined ? 'url' : source.envVar
  const value = url ?? env[source.envVar] ?? source.fallback
  return { option, value, parsed: parseBrokerUrl(option, value, source.schemes, source.example) }
}

/** Parses a broker URL, failing with the option's name, the (masked) value and the expected form. */
export function parseBrokerUrl (option: string, url: string, schemes: string[], example: string): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigError(option, `"${redactUrl(url)}" is not a valid URL; use the form ${example}`)
  }
  const scheme = parsed.protocol.replace(/:$/, '')
  if (!schemes.includes(scheme)) {
    throw new ConfigError(option, `"${redactUrl(url)}" has scheme "${scheme}:", expected ${schemes.map(s => `"${s}:"`).join(' or ')}; use the form ${example}`)
  }
  if (parsed.hostname === '') throw new ConfigError(option, `"${redactUrl(url)}" has no host; use the form ${example}`)
  return parsed
}

/** Checks a positive whole number option. */
export function checkPositiveInt (option: string, value: unknown, { min = 1, max = Number.MAX_SAFE_INTEGER }: { min?: number, max?: number } = {}): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(option, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Checks an optional plain-object option (client options passed through). */
export function checkObject (option: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(option, `must be an object, got ${JSON.stringify(value)}`)
  }
  return value as Record<string, unknown>
}

/**
 * Refuses keys that are not options (a typo would otherwise be ignored, and a misspelt
 * `broker` would silently run on the embedded broker), naming the closest valid key.
 * `path` is where the object sits (`redis`), empty at the top level.
 */
export function checkKnownKeys (path: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue
    const option = path === '' ? key : `${path}.${key}`
    const near = nearest(key, known)
    const suggestion = near === undefined
      ? `the options${path === '' ? '' : ` of ${path}`} are ${known.map(k => `"${k}"`).join(', ')}`
      : `did you mean "${path === '' ? near : `${path}.${near}`}"?`
    throw new ConfigError(option, `unknown option "${option}"; ${suggestion}`)
  }
}

/** The known key a typo most likely meant: within a third of its length in edits, or differing only in case. */
function nearest (key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return bestDistance <= Math.max(1, Math.floor(Math.max(key.length, 3) / 3)) ? best : undefined
}

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
function editDistance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i === 0 ? j : j === 0 ? i : 0))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}
