#!/usr/bin/env bash
# Runs bench/otel-cost.ts in every mode, ROUNDS times interleaved (default 3), each in a
# fresh process, and prints the median CPU per message of each mode and the split of the
# cost of an SDK registered into the SDK's own part and Herald's. Needs `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-30000}
ROUNDS=${ROUNDS:-3}
MODES=(raw-off raw-on raw-sampled herald-off herald-off-als herald-on herald-sampled)
out=$(for _ in $(seq "$ROUNDS"); do for m in "${MODES[@]}"; do node --import tsx bench/otel-cost.ts "$m" "$N"; done; done)
node -e '
const rows = process.argv[1].trim().split("\n").map(l => JSON.parse(l))
const med = m => { const v = rows.filter(r => r.mode === m).map(r => r.cpuUs).sort((a, b) => a - b); return v[Math.floor((v.length - 1) / 2)] }
const f = {}
for (const m of [...new Set(rows.map(r => r.mode))]) { f[m] = med(m); console.log(m.padEnd(15), f[m].toFixed(1).padStart(6), "µs") }
const sdk = f["raw-on"] - f["raw-off"], all = f["herald-on"] - f["herald-off"]
console.log(`SDK registered: Herald +${all.toFixed(1)} µs, the same telemetry without Herald +${sdk.toFixed(1)} µs, Herald\x27s share ${(all - sdk).toFixed(1)} µs (of which the context manager\x27s async hooks on Herald\x27s own promises ${(f["herald-off-als"] - f["herald-off"]).toFixed(1)} µs)`)
const ss = f["raw-sampled"] - f["raw-off"], sa = f["herald-sampled"] - f["herald-off"]
console.log(`sampled 10%: Herald +${sa.toFixed(1)} µs, without Herald +${ss.toFixed(1)} µs, Herald\x27s share ${(sa - ss).toFixed(1)} µs`)
' "$out"
