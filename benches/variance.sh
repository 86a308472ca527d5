#!/usr/bin/env bash
# Where the variance of a measurement comes from: long series of one config
# on one example `tiny` TorchServe (batch 16, delay 5 ms, 3 workers, one
# torch thread each: what studies of it usually recommend).
#
#   fresh     RUNS back-to-back fixed windows right after a start (the JIT,
#             then any drift: logs growing, heap, …)
#   observer  RUNS pairs alternating load-only and observed runs (memory
#             sampling and metric scrapes on): what watching costs
#   quiet     like fresh, TorchServe at log level info with async logging
#   pinned    like fresh, servetune's load generator pinned to CPU 1
#   steady    like fresh, adaptive windows (servetune's default)
#
# Prints each series, its median, CV, first-run and trend figures, log and
# memory growth, and the observed/load-only ratio. Asserts nothing.
# Usage: benches/variance.sh [RUNS] [SECONDS] [USERS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-10}"
seconds="${2:-10}"
users="${3:-16}"
source scripts/example-deployment.sh
provision_and_build
deployment="$(pwd)/results/variance-deployment"
copy_example_deployment "$deployment"
target="$deployment/target.toml"
config="$deployment/config.properties"
trap '"$servetune" server stop --target "$target" >/dev/null 2>&1 || true' EXIT
out="$(mktemp -d)"

configure() { # log level, async logging
    "$servetune" apply --config "$config" --target "$target" --restart \
        --set env.OMP_NUM_THREADS=1 --set "log4j.level=$1" --set "async_logging=$2" \
        --set models.tiny.batchSize=16 --set models.tiny.maxBatchDelay=5 \
        --set models.tiny.minWorkers=3 --set models.tiny.maxWorkers=3 >/dev/null
}

bench() { # series, command prefix ("" or e.g. "taskset -c 1"), extra bench flags…
    local series="$1" prefix="$2"; shift 2
    local json
    # shellcheck disable=SC2086 # the prefix is words on purpose
    json="$($prefix "$servetune" bench --target "$target" --body examples/deployment/bodies/tiny --users "$users" \
        --duration "${seconds}s" --warmup 2s --json --no-save "$@")"
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])
m = r.get("memory_mb") or {}
o = r.get("observer") or {}
print(sys.argv[1], r["throughput_rps"], r["latency_ms"]["p99"], m.get("rss_mean", 0), o.get("cpu_share", 0), r["warmup_s"])
' "$series" "$json" >>"$out/runs"
    tail -n 1 "$out/runs" >&2
}

logs_kb() { du -sk "$deployment/run/logs" | cut -f1; }

configure debug false
before="$(logs_kb)"
for ((i = 1; i <= runs; i++)); do bench fresh "" --fixed-window; done
echo "fresh-logs $before $(logs_kb)" >>"$out/runs"
for ((i = 1; i <= runs; i++)); do
    bench load-only "" --fixed-window --no-observe
    bench observed "" --fixed-window
done
configure info true
before="$(logs_kb)"
for ((i = 1; i <= runs; i++)); do bench quiet "" --fixed-window; done
echo "quiet-logs $before $(logs_kb)" >>"$out/runs"
configure debug false
for ((i = 1; i <= runs; i++)); do bench pinned "taskset -c 1" --fixed-window; done
configure debug false
for ((i = 1; i <= runs; i++)); do bench steady ""; done
"$servetune" restore --config "$config" >/dev/null 2>&1 || true

python3 - "$out/runs" "$seconds" "$users" <<'PY'
import statistics, sys
path, seconds, users = sys.argv[1:4]
series, logs = {}, {}
for line in open(path):
    name, *rest = line.split()
    if name.endswith("-logs"):
        logs[name[:-5]] = tuple(map(float, rest))
        continue
    series.setdefault(name, []).append(tuple(map(float, rest)))
print(f"tiny (batch 16, delay 5 ms, 3 workers x 1 thread), closed loop {users} users, {seconds} s windows after 2 s warm-up")
print("| series | runs | median req/s | CV | first run / median of the rest | last third / first third (after run 1) | p99 median ms | JVM+workers RSS first -> last MB |")
print("|---|---|---|---|---|---|---|---|")
for name, rows in series.items():
    t = [r[0] for r in rows]
    rest = t[1:] or t
    third = max(1, len(rest) // 3)
    cv = statistics.stdev(t) / statistics.mean(t) * 100 if len(t) > 1 else 0
    print(f"| {name} | {len(t)} | {statistics.median(t):.0f} | {cv:.1f}% | {t[0] / statistics.median(rest):.2f} | "
          f"{statistics.mean(rest[-third:]) / statistics.mean(rest[:third]):.2f} | {statistics.median(r[1] for r in rows):.1f} | "
          f"{rows[0][2]:.0f} -> {rows[-1][2]:.0f} |")
if "observed" in series and "load-only" in series:
    pairs = list(zip(series["load-only"], series["observed"]))
    ratios = sorted(o[0] / l[0] for l, o in pairs)
    share = statistics.median(o[3] for _, o in pairs) * 100
    print(f"observer: observed / load-only throughput, median of {len(ratios)} pairs: {statistics.median(ratios):.3f} "
          f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}); sampler CPU {share:.2f}% of one core")
for name, (before, after) in logs.items():
    per_run = (after - before) / max(1, len(series.get(name, [1])))
    print(f"logs written during {name}: {after - before:.0f} KB ({per_run:.0f} KB per {seconds} s run)")
PY
