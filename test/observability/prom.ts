import type { Registry } from 'prom-client'

/** The value of a prom-client sample whose labels include `labels` (0 when none); `name` may end in `_count`, `_sum` or `_bucket`. */
export async function promValue (registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const base = name.replace(/_(count|sum|bucket)$/, '')
  const metric = (await registry.getMetricsAsJSON()).find(m => m.name === base)
  const sample = (metric?.values ?? []).find(v => ((v as { metricName?: string }).metricName ?? base) === name && Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l))
  return sample?.value ?? 0
}
