#!/usr/bin/env bash
# Repeatability of a measurement: REPEATS runs of the same load on the same
# config of the example `tiny` TorchServe; prints each run and the
# coefficient of variation (stdev / mean) of throughput and p99.
# Usage: benches/repeatability.sh [REPEATS] [SECONDS] [USERS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats="${1:-5}"
seconds="${2:-10}"
users="${3:-8}"
source scripts/example-deployment.sh
provision_and_build
deployment="$(pwd)/results/repeatability-deployment"
copy_example_deployment "$deployment"
trap '"$servetune" server stop --target "$deployment/target.toml" >/dev/null 2>&1 || true' EXIT
"$servetune" server start --target "$deployment/target.toml" >/dev/null

runs=()
for ((i = 1; i <= repeats; i++)); do
    json="$("$servetune" bench --target "$deployment/target.toml" --body examples/deployment/bodies/tiny \
        --users "$users" --duration "${seconds}s" --warmup 2s --json --no-save)"
    runs+=("$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["throughput_rps"], r["latency_ms"]["p99"])' "$json")")
    echo "run $i: ${runs[-1]}" >&2
done
python3 - "$repeats" "$seconds" "$users" "${runs[@]}" <<'PY'
import statistics, sys
repeats, seconds, users = sys.argv[1:4]
rows = [tuple(map(float, r.split())) for r in sys.argv[4:]]
tput = [r[0] for r in rows]
p99 = [r[1] for r in rows]
cv = lambda xs: statistics.stdev(xs) / statistics.mean(xs) * 100
print(f"tiny, closed loop {users} users, {seconds}s window after 2s warm-up, {repeats} runs")
print("| run | throughput req/s | p99 ms |")
print("|---|---|---|")
for i, (t, p) in enumerate(rows, 1):
    print(f"| {i} | {t:.1f} | {p:.2f} |")
print(f"| CV | {cv(tput):.1f}% | {cv(p99):.1f}% |")
PY
