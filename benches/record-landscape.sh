#!/usr/bin/env bash
# Records a landscape for the replay benchmark: a grid over batch size, batch
# delay, workers and netty threads of the example `tiny` TorchServe, each
# config measured with `servetune bench` (closed loop), some repeated to
# capture the noise. Netty threads (cold) is the outer loop, so the server
# restarts once per value; the rest change live through the management API.
#
# Output CSV (one row per measurement; rows with equal parameters are repeats):
#   batch_size,max_batch_delay,workers,number_of_netty_threads,
#   throughput_rps,p50_ms,p99_ms,error_rate,memory_mb
# Usage: benches/record-landscape.sh [OUT.csv] [SECONDS] [USERS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-benches/landscapes/tiny-cpu.csv}"
seconds="${2:-4}"
users="${3:-16}"
batch_sizes=(1 2 4 8 16)
delays=(1 5 20 50)
workers=(1 2 3)
netty=(1 2 4)
repeat_every=5   # every 5th config is measured twice

source scripts/example-deployment.sh
provision_and_build
deployment="$(pwd)/results/landscape-deployment"
copy_example_deployment "$deployment"
mkdir -p "$(dirname "$out")"
target="$deployment/target.toml"
config="$deployment/config.properties"
trap '"$servetune" server stop --target "$target" >/dev/null 2>&1 || true' EXIT

measure() {
    "$servetune" bench --target "$target" --body examples/deployment/bodies/tiny --users "$users" \
        --duration "${seconds}s" --warmup 1s --json --no-save \
        | python3 -c '
import json, sys
r = json.load(sys.stdin)
m = r.get("memory_mb") or {}
lat = r["latency_ms"]
print("%.2f,%.3f,%.3f,%.5f,%.1f" % (r["throughput_rps"], lat["p50"], lat["p99"], r["error_rate"], m.get("pss_mean", 0)))'
}

echo "batch_size,max_batch_delay,workers,number_of_netty_threads,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb" >"$out"
count=0
for n in "${netty[@]}"; do
    "$servetune" apply --config "$config" --target "$target" --restart --set "number_of_netty_threads=$n" >/dev/null 2>&1 \
        || "$servetune" server start --target "$target" >/dev/null
    # The JVM's JIT needs a few seconds of traffic after each start.
    "$servetune" bench --target "$target" --body examples/deployment/bodies/tiny --users "$users" \
        --duration 5s --warmup 0s --no-save --json >/dev/null
    for b in "${batch_sizes[@]}"; do
        for d in "${delays[@]}"; do
            # Workers innermost: a batch change re-registers the model, a
            # workers change only scales it.
            for w in "${workers[@]}"; do
                "$servetune" apply --config "$config" --target "$target" --hot \
                    --set "models.tiny.batchSize=$b" --set "models.tiny.maxBatchDelay=$d" \
                    --set "models.tiny.minWorkers=$w" --set "models.tiny.maxWorkers=$w" >/dev/null
                count=$((count + 1))
                times=1
                if ((count % repeat_every == 0)); then times=2; fi
                for ((r = 0; r < times; r++)); do
                    row="$b,$d,$w,$n,$(measure)"
                    echo "$row" >>"$out"
                    echo "[$count] $row" >&2
                done
            done
        done
    done
done
"$servetune" restore --config "$config" >/dev/null
echo "wrote $out" >&2
