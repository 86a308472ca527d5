#!/usr/bin/env bash
# Records a landscape for the replay benchmark and the landscape model:
# every config of a grid over one example model served by TorchServe
# (MODEL: tiny, echo, small, resnet50, bert or gpt2; default tiny), measured with
# `servetune bench` (closed loop), PASSES times. Each pass walks the grid with the cold settings
# outermost (one restart per cold config) and the live ones inside, so the
# repeats of a config are minutes apart: they carry the drift between runs,
# not just the noise within one. Restart and live-change times are measured
# on the way and written in the landscape's first line, which `servetune
# replay` charges:
#
#   # servetune-landscape cold=a,b restart_s=… hot_s=… window_s=… users=U model=M latency_ms=… worker_mb=… frontend_mb=…
#
# The model's features (single-request latency, a worker's memory, the
# frontend's) are measured once at the start by `servetune predict`, the
# way it measures a new model, and go into the same line.
#
# Three grids:
#   hot    batch size, delay, workers; netty threads cold (the first landscape)
#   cold   batch size, delay, workers; threads per worker, async logging
#          and log level cold (the second landscape, for choosing the
#          strategy's knobs on data other than the headline's)
#   models the hot grid's parameters on fewer levels, for models whose
#          requests take 100 ms and more (the landscape model's priors)
#
# Output CSV: the grid's parameters (numbers: booleans 0/1, log level
# 0 = debug, 1 = warn), then throughput_rps,p50_ms,p99_ms,error_rate,memory_mb.
# Usage: [MODEL=m] [WARMUP=s] benches/record-landscape.sh GRID OUT.csv [PASSES] [SECONDS] [USERS]
# ($SERVETUNE_BIN: a servetune binary to run instead of a release build.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
grid="${1:?grid: hot, cold or models}"
out="${2:?output csv}"
passes="${3:-3}"
seconds="${4:-3}"
users="${5:-16}"
warmup="${WARMUP:-1}"
model="${MODEL:-tiny}"
case "$model" in
tiny | echo | resnet50 | bert | gpt2) body="examples/deployment/bodies/$model" ;;
small) body="examples/deployment/bodies/tiny" ;; # tiny's input, more compute
*) echo "unknown model '$model' (tiny, echo, small, resnet50, bert or gpt2)" >&2; exit 2 ;;
esac

case "$grid" in
hot)
    batch_sizes=(1 2 4 8 16); delays=(1 5 20 50); workers=(1 2 3)
    threads=(unset); asyncs=(false); levels=(debug); netty=(1 2 4)
    columns="batch_size,max_batch_delay,workers,number_of_netty_threads"
    cold="number_of_netty_threads" ;;
cold)
    batch_sizes=(1 4 16); delays=(2 10); workers=(1 2 3)
    threads=(1 2); asyncs=(false true); levels=(debug warn); netty=(2)
    columns="batch_size,max_batch_delay,workers,threads_per_worker,async_logging,log_level"
    cold="threads_per_worker,async_logging,log_level" ;;
models)
    batch_sizes=(1 2 4 8); delays=(5 50); workers=(1 2 3)
    threads=(unset); asyncs=(false); levels=(debug); netty=(1 4)
    columns="batch_size,max_batch_delay,workers,number_of_netty_threads"
    cold="number_of_netty_threads" ;;
*) echo "unknown grid '$grid' (hot, cold or models)" >&2; exit 2 ;;
esac

source scripts/example-deployment.sh
source benches/common.sh
servetune="$bin"
deployment="$(pwd)/results/landscape-deployment"
copy_example_deployment "$deployment"
# The example deployment serves tiny: the same deployment serves $model.
sed -i "s/tiny/$model/g" "$deployment/config.properties"
sed -i 's/^ready_timeout = .*/ready_timeout = "300s"/' "$deployment/target.toml"
mkdir -p "$(dirname "$out")"
target="$deployment/target.toml"
config="$deployment/config.properties"
trap '"$servetune" server stop --target "$target" >/dev/null 2>&1 || true' EXIT
rows="$(mktemp)"
costs="$(mktemp)"

now() { date +%s.%N; }

measure() {
    "$servetune" bench --target "$target" --body "$body" --users "$users" \
        --duration "${seconds}s" --warmup "${warmup}s" --fixed-window --json --no-save \
        | python3 -c '
import json, sys
r = json.load(sys.stdin)
m = r.get("memory_mb") or {}
lat = r["latency_ms"]
print("%.2f,%.3f,%.3f,%.5f,%.1f" % (r["throughput_rps"], lat["p50"], lat["p99"], r["error_rate"], m.get("pss_mean", 0)))'
}

restart_on() { # threads async level netty
    local started; started="$(now)"
    local env=()
    if [[ "$1" != unset ]]; then env=(--set "env.OMP_NUM_THREADS=$1"); fi
    "$servetune" apply --config "$config" --target "$target" --restart "${env[@]}" \
        --set "async_logging=$2" --set "log4j.level=$3" --set "number_of_netty_threads=$4" >/dev/null 2>&1 \
        || { "$servetune" server stop --target "$target" >/dev/null 2>&1 || true
             "$servetune" apply --config "$config" --target "$target" --restart "${env[@]}" \
                 --set "async_logging=$2" --set "log4j.level=$3" --set "number_of_netty_threads=$4" >/dev/null; }
    # The JIT needs a few seconds of traffic after each start: part of the
    # restart's cost, as a study pays it too.
    "$servetune" bench --target "$target" --body "$body" --users "$users" \
        --duration 5s --warmup 0s --fixed-window --no-save --json >/dev/null
    echo "restart $(python3 -c "print($(now) - $started)")" >>"$costs"
}

hot_to() { # batch delay workers
    local started; started="$(now)"
    "$servetune" apply --config "$config" --target "$target" --hot \
        --set "models.$model.batchSize=$1" --set "models.$model.maxBatchDelay=$2" \
        --set "models.$model.minWorkers=$3" --set "models.$model.maxWorkers=$3" >/dev/null
    echo "hot $(python3 -c "print($(now) - $started)")" >>"$costs"
}

# The model's features, measured as `predict` measures a new model.
"$servetune" server start --target "$target" >/dev/null
features="$("$servetune" predict --target "$target" --body "$body" --model "$model" --features-only --json | python3 -c '
import json, sys
f = json.load(sys.stdin)["features"]
print("latency_ms=%.2f worker_mb=%.0f frontend_mb=%.0f" % (f["latency_ms"], f["worker_mb"], f["frontend_mb"]))')"
echo "features of $model: $features" >&2

count=0
for ((pass = 1; pass <= passes; pass++)); do
    for t in "${threads[@]}"; do for a in "${asyncs[@]}"; do for l in "${levels[@]}"; do for n in "${netty[@]}"; do
        restart_on "$t" "$a" "$l" "$n"
        for b in "${batch_sizes[@]}"; do
            ds=("${delays[@]}")
            # The delay does not matter without batching: one level only.
            if ((b == 1)); then ds=("${delays[0]}"); fi
            for d in "${ds[@]}"; do for w in "${workers[@]}"; do
                hot_to "$b" "$d" "$w"
                count=$((count + 1))
                case "$grid" in
                hot | models) params="$b,$d,$w,$n" ;;
                cold) params="$b,$d,$w,${t/unset/0},$([[ $a == true ]] && echo 1 || echo 0),$([[ $l == warn ]] && echo 1 || echo 0)" ;;
                esac
                row="$params,$(measure)"
                echo "$row" >>"$rows"
                echo "[pass $pass, $count] $row" >&2
            done; done
        done
    done; done; done; done
done
"$servetune" restore --config "$config" >/dev/null 2>&1 || true
python3 - "$costs" "$rows" "$out" "$columns" "$cold" "$((seconds + warmup))" "users=$users model=$model $features" <<'PY'
import statistics, sys
costs, rows, out, columns, cold, window, model = sys.argv[1:8]
kinds = {"restart": [], "hot": []}
for line in open(costs):
    kind, seconds = line.split()
    kinds[kind].append(float(seconds))
restart = statistics.median(kinds["restart"])
hot = statistics.median(kinds["hot"])
with open(out, "w") as f:
    f.write(f"# servetune-landscape cold={cold} restart_s={restart:.1f} hot_s={hot:.1f} window_s={window} {model}\n")
    f.write(columns + ",throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n")
    f.write(open(rows).read())
print(f"wrote {out}: restart {restart:.1f} s, live change {hot:.1f} s (medians)", file=sys.stderr)
PY
