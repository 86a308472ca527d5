#!/usr/bin/env bash
# What watching the server costs: ROUNDS pairs of back-to-back runs on one
# example `tiny` TorchServe (batch 16, delay 5 ms, 3 workers x 1 thread),
# alternating load only (--no-observe: no memory sampling, no metric
# scrapes) and observed (servetune's default), in alternating order within
# the pair so neither is always second. Prints the paired throughput ratio
# (median and quartiles) and the sampler's own CPU. Asserts nothing.
# Usage: benches/observer-cost.sh [ROUNDS] [SECONDS] [USERS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-20}"
seconds="${2:-10}"
users="${3:-16}"
source scripts/example-deployment.sh
provision_and_build
deployment="$(pwd)/results/observer-deployment"
copy_example_deployment "$deployment"
target="$deployment/target.toml"
trap '"$servetune" server stop --target "$target" >/dev/null 2>&1 || true' EXIT
"$servetune" apply --config "$deployment/config.properties" --target "$target" --restart \
    --set env.OMP_NUM_THREADS=1 --set models.tiny.batchSize=16 --set models.tiny.maxBatchDelay=5 \
    --set models.tiny.minWorkers=3 --set models.tiny.maxWorkers=3 >/dev/null
out="$(mktemp)"
run() { # label, extra flags…
    local label="$1"; shift
    "$servetune" bench --target "$target" --body examples/deployment/bodies/tiny --users "$users" \
        --duration "${seconds}s" --warmup 2s --fixed-window --json --no-save "$@" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); o=r.get("observer") or {}; print(sys.argv[1], r["throughput_rps"], o.get("cpu_share", 0))' "$label" >>"$out"
}
run warm-up --no-observe # the JIT after the restart
for ((i = 1; i <= rounds; i++)); do
    if ((i % 2)); then run load-only --no-observe; run observed; else run observed; run load-only --no-observe; fi
    echo "pair $i done" >&2
done
python3 - "$out" "$rounds" "$seconds" <<'PY'
import statistics, sys
path, rounds, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.split() for l in open(path)][1:]
pairs = [rows[i:i + 2] for i in range(0, len(rows), 2)]
ratios, shares = [], []
for pair in pairs:
    by = {r[0]: (float(r[1]), float(r[2])) for r in pair}
    ratios.append(by["observed"][0] / by["load-only"][0])
    shares.append(by["observed"][1])
ratios.sort()
q = statistics.quantiles(ratios, n=4)
print(f"{rounds} pairs of {seconds} s runs: observed / load-only throughput median {statistics.median(ratios):.3f} "
      f"(quartiles {q[0]:.3f}-{q[2]:.3f}); sampler CPU {statistics.median(shares) * 100:.2f}% of one core")
PY
