/** What every `herald` command shares: its exit codes and how a wrong command line is said. */

export const EXIT_OK = 0
/** Start-up failed: bad configuration, a handler module Herald cannot use, a broker it cannot reach. */
export const EXIT_FAILURE = 1
/** The command line itself is wrong. */
export const EXIT_USAGE = 2

/** A mistake in the command line: exit code 2, with a hint to read the usage. */
export class UsageError extends Error {}

/** parseArgs's messages are long and sometimes span lines; say the same in one short line. */
export function describeParseError (err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | null)?.code
  const flag = /'(?:-\w, )?(--?[\w-]+)/.exec(message)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) return `unknown option ${flag}`
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
    if (message.includes('does not take an argument')) return `${flag} takes no value`
    return `${flag} needs a value (write ${flag}=VALUE when the value starts with "-")`
  }
  return message.split('\n')[0]!
}
