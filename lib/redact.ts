/**
 * Masks the password in a connection URL so it can be logged or put in an error.
 * `amqp://user:secret@host` becomes `amqp://user:***@host`.
 */
export function redactUrl (url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^:@/]*):([^@/]*)@/i, (_m, scheme: string, user: string) => `${scheme}${user}:***@`)
}

/** Masks every URL password found inside a longer text (an error message from a client). */
export function redactText (text: string, secrets: Array<string | undefined> = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):([^@/\s]*)@/gi, (_m, scheme: string, user: string) => `${scheme}${user}:***@`)
  for (const secret of secrets) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join('***')
  }
  return out
}
