import { readdir, realpath, stat } from 'node:fs/promises'
import { extname, join, relative, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import { definitionOf } from '../handlers/decorators.js'
import type { HandlerDefinition } from '../handlers/handler.js'
import { HandlerError } from '../errors.js'

const JS = new Set(['.js', '.mjs', '.cjs'])
const TS = new Set(['.ts', '.mts', '.cts'])

/** Whether this process can import TypeScript (a loader such as tsx, or Node's type stripping). */
export function typeScriptLoaderActive (): boolean {
  const features = process.features as { typescript?: unknown }
  if (features.typescript !== undefined && features.typescript !== false) return true
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ')
  // `--no-experimental-strip-types` (Node 22.18+ and 24 strip types by default) turns it off.
  return /tsx|ts-node|@swc-node|@esbuild-kit|(?<!no-)experimental-(strip|transform)-types/.test(flags)
}

function skipped (name: string): boolean {
  return name.startsWith('_') || name.startsWith('.') || /\.d\.[cm]?ts$/.test(name) || /\.test\.[^.]+$/.test(name) || name.includes('.test.')
}

/**
 * The handler module files under `dir`, recursively, sorted: `.js .mjs .cjs`, plus
 * `.ts .mts .cts` when a TypeScript loader is active. Skips `*.d.ts`, `*.test.*` and names
 * starting with `_` or `.`. A file or folder reached through a link is loaded only when
 * its real path is inside `dir`.
 */
export async function findHandlerFiles (dir: string): Promise<string[]> {
  let root: string | undefined
  let cause: unknown
  try {
    root = await realpath(dir)
    if (!(await stat(root)).isDirectory()) root = undefined
  } catch (err) {
    cause = err
  }
  if (root === undefined) {
    throw new HandlerError(`handlers directory "${dir}" does not exist or is not a directory; pass dir (or --handlers) pointing at your handlers folder`, { cause })
  }
  const withTs = typeScriptLoaderActive()
  const files: string[] = []
  const seen = new Set<string>()
  const inside = (p: string): boolean => p === root || p.startsWith(root + sep)

  async function walk (folder: string): Promise<void> {
    const entries = await readdir(folder, { withFileTypes: true })
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (skipped(entry.name)) continue
      const path = join(folder, entry.name)
      let real: string
      try {
        real = await realpath(path)
      } catch {
        continue // a dangling link
      }
      // Load only what really lives under the directory: a link pointing out is ignored.
      if (!inside(real) || seen.has(real)) continue
      seen.add(real)
      const info = await stat(real)
      if (info.isDirectory()) {
        await walk(path)
      } else if (info.isFile()) {
        const ext = extname(entry.name)
        if (JS.has(ext)) files.push(real)
        else if (TS.has(ext)) {
          if (!withTs) {
            throw new HandlerError(`handler file ${relative(process.cwd(), path)} is TypeScript, but Node.js runs without a TypeScript loader; start with "node --import tsx" (or "tsx"), or compile your handlers to .js`)
          }
          files.push(real)
        }
      }
    }
  }
  await walk(root)
  return files
}

/**
 * Imports every handler module under `dir` and returns the handlers they export
 * (`messageHandler()` values and `@consumer` classes, default or named). A module that
 * exports no handler fails, naming the file; other exports beside a handler are ignored.
 */
export async function loadHandlers (dir: string): Promise<HandlerDefinition[]> {
  return (await loadHandlerModules(dir)).map(h => h.definition)
}

/** A loaded handler and where it came from: `file` (relative to the working directory) and its export name. */
export interface LoadedHandler {
  definition: HandlerDefinition
  origin: string
}

/** `loadHandlers`, with each handler's origin (`handlers/orders.js, export default`) for errors that must tell two handlers apart. */
export async function loadHandlerModules (dir: string): Promise<LoadedHandler[]> {
  const definitions: LoadedHandler[] = []
  const files = await findHandlerFiles(dir)
  if (files.length === 0) {
    const kinds = typeScriptLoaderActive() ? '.js .mjs .cjs .ts .mts .cts' : '.js .mjs .cjs'
    throw new HandlerError(`handlers directory "${dir}" has no handler module (${kinds}, not starting with "_" or ".", not *.test.* or *.d.ts); put your handler modules there, or point dir (or --handlers) at the folder that has them`)
  }
  for (const file of files) {
    let mod: Record<string, unknown>
    try {
      mod = await import(pathToFileURL(file).href) as Record<string, unknown>
    } catch (err) {
      throw new HandlerError(`could not load handler module ${relative(process.cwd(), file)}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    }
    const found = new Map<HandlerDefinition, string>()
    for (const [name, value] of Object.entries(mod)) {
      const definition = definitionOf(value)
      if (definition !== undefined && !found.has(definition)) found.set(definition, `${relative(process.cwd(), file)}, export ${name}`)
    }
    if (found.size === 0) {
      throw new HandlerError(`handler module ${relative(process.cwd(), file)} exports no handler; export a messageHandler(...) or a @consumer class (default or named), or rename it with a leading "_" if it is a helper`)
    }
    for (const [definition, origin] of found) definitions.push({ definition, origin })
  }
  return definitions
}
