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

describe('the published package', function () {
  this.timeout(60_000)

  it('every source a shipped .map names is shipped too, or inlined in the map', async function () {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT })
    const shipped = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map(f => f.path))
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
