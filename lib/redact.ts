const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * Masks the password in a connection URL so it can be logged or put in an error.
 * `amqp://user:secret@host` becomes `amqp://user:***@host`. The user information ends at
 * the last `@`, so a password with an unencoded `@`, `/` or space is masked whole (a URL
 * without user information but with an `@` further on may be masked more than needed).
 */
export function redactUrl (url: string): string {
  const scheme = SCHEME.exec(url)?.[0]
  if (scheme === undefined) return url
  const rest = url.slice(scheme.length)
  const at = rest.lastIndexOf('@')
  const colon = rest.indexOf(':')
  if (at < 0 || colon < 0 || colon > at) return url
  return `${scheme}${rest.slice(0, colon)}:***${rest.slice(at)}`
}

// In a longer text a URL ends at a space or a quote; its user information at the last `@` before that.
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/)([^:@/\s"'<>]*):([^\s"'<>]*)@/gi

// Secrets that Herald was configured with (URL passwords, SASL passwords, TLS passphrases),
// kept per process so that text Herald did not produce itself, such as a handler's error
// on its way to a dead-letter header or a log line, is masked too. Shorter ones would mask
// ordinary words in every message; a secret that short is no protection anyway.
const knownSecrets = new Set<string>()
const MIN_KNOWN_SECRET = 4

/**
 * Remembers secrets from the configuration (a broker adapter calls it with what its
 * settings carry): from then on `redactText` masks them in any text.
 */
export function rememberSecrets (secrets: Iterable<string | undefined>): void {
  for (const secret of secrets) {
    if (typeof secret === 'string' && secret.length >= MIN_KNOWN_SECRET) knownSecrets.add(secret)
  }
}

/**
 * Masks every URL password found inside a longer text (an error message from a client),
 * the `secrets` given, and every secret remembered from the configuration.
 */
export function redactText (text: string, secrets: Array<string | undefined> = []): string {
  let out = text.replace(URL_PASSWORD, (_m, scheme: string, user: string) => `${scheme}${user}:***@`)
  const all = [...secrets, ...knownSecrets]
  // Longest first, so that a secret containing another is masked whole.
  all.sort((a, b) => (b?.length ?? 0) - (a?.length ?? 0))
  for (const secret of all) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join('***')
  }
  return out
}
