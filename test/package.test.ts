import { execFile } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'

/**
 * What `npm pack` ships, as built by `npm run build` (the test script builds first): a
 * stack trace through a source map must lead to code the user has, and the CLI must run.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** The paths `npm pack` would put in the tarball. */
async function packedFiles (): Promise<Set<string>> {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT })
  return new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map(f => f.path))
}

/** Every file path a package.json field (`main`, `types`, `bin`, `exports`, nested) names. */
function targets (value: unknown): string[] {
  if (typeof value === 'string') return [normalize(value)]
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(targets)
  return []
}

describe('the published package', function () {
  this.timeout(60_000)
  let shipped: Set<string>

  before(async function () {
    shipped = await packedFiles()
  })

  it('ships the built library (.js, .d.ts, .js.map), README.md and package.json, and nothing else', function () {
    const allowed = /^(dist\/(lib|plugins|bin)\/.+\.(js|d\.ts|js\.map)|README\.md|package\.json|LICENSE)$/
    expect([...shipped].filter(p => !allowed.test(p)), 'files that should not be published').to.deep.equal([])
    for (const js of [...shipped].filter(p => p.endsWith('.js'))) {
      expect(shipped, `the declarations of ${js}`).to.include(js.replace(/\.js$/, '.d.ts'))
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(ROOT, js), 'utf8'))?.[1]
      expect(url !== undefined && shipped.has(normalize(join(dirname(js), url))), `the source map ${js} names`).to.equal(true)
    }
    expect([...shipped].some(p => p.startsWith('dist/lib/brokers/memory/')), 'the memory adapter').to.equal(true)
  })

  it('every entry point package.json names (main, types, bin, exports) is in the package', function () {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>
    const named = [manifest.main, manifest.types, manifest.bin, manifest.exports].flatMap(targets)
    expect(named).to.include.members(['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/bin/herald.js', 'package.json'])
    expect(named.filter(p => !shipped.has(p)), 'entry points missing from the package').to.deep.equal([])
  })

  it('every source a shipped .map names is shipped too, or inlined in the map', function () {
    const maps = [...shipped].filter(p => p.endsWith('.map'))
    expect(maps, 'source maps in the package').to.not.be.empty
    const missing: string[] = []
    for (const map of maps) {
      const { sources, sourcesContent } = JSON.parse(readFileSync(join(ROOT, map), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null> }
      sources.forEach((source, i) => {
        const inlined = typeof sourcesContent?.[i] === 'string'
        if (!inlined && !shipped.has(normalize(join(dirname(map), source)))) missing.push(`${map} → ${source}`)
      })
    }
    expect(missing, 'map sources neither shipped nor inlined').to.deep.equal([])
  })

  it('npm run build leaves dist/bin/herald.js executable', function () {
    const mode = statSync(join(ROOT, 'dist/bin/herald.js')).mode
    expect(mode & 0o111, 'execute bits of dist/bin/herald.js').to.equal(0o111)
  })
})
