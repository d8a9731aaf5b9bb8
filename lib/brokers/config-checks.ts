import { ConfigError } from '../errors.js'
import { redactUrl } from '../redact.js'

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
