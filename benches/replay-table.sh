#!/usr/bin/env bash
# The replay benchmark table: every servetune strategy and Optuna's TPE on
# the same recorded landscape and seeds, in trials and in study seconds
# (each move charged as the landscape's first line says: restart, live
# change, window). Installs Optuna into a cached venv.
# Usage: benches/replay-table.sh [LANDSCAPE.csv] [SLO_P99_MS] [SEEDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
landscape="${1:-benches/landscapes/tiny-cpu.csv}"
slo="${2:-25}"
seeds="${3:-30}"
cache="${SERVETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servetune}"
venv="$cache/venv-optuna"
if ! "$venv/bin/python" -c 'import optuna' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q optuna==4.5.0 >&2
fi
cargo build --release --quiet
rows=()
for strategy in default grid random hill-climb nelder-mead tpe tpe-local tpe-cost staged; do
    rows+=("$(target/release/servetune replay --landscape "$landscape" --strategy "$strategy" --seeds "$seeds" --slo-p99-ms "$slo" --json)")
done
rows+=("$("$venv/bin/python" benches/optuna_replay.py "$landscape" --seeds "$seeds" --slo-p99-ms "$slo")")
python3 - "$landscape" "$slo" "$seeds" "${rows[@]}" <<'PY'
import json, sys
landscape, slo, seeds = sys.argv[1:4]
reports = [json.loads(r) for r in sys.argv[4:]]
first = reports[0]
costs = first["costs"]
print(f"landscape {landscape}: {first['points']} configs, best feasible mean {first['best_feasible_throughput_rps']:.1f} req/s "
      f"at p99 <= {slo} ms; target regret 3%, {seeds} seeds; charged: restart {costs['restart_s']} s, "
      f"live change {costs['hot_s']} s, window {costs['window_s']} s")
print("| strategy | median trials to target | p90 trials | median seconds to target | p90 seconds | median restarts | failed seeds |")
print("|---|---|---|---|---|---|---|")
show = lambda v: "failed" if v is None else f"{v:.1f}"
for r in reports:
    print(f"| {r['strategy']} | {show(r['median_trials_to_target'])} | {show(r['p90_trials_to_target'])} | "
          f"{show(r['median_seconds_to_target'])} | {show(r['p90_seconds_to_target'])} | {r['median_restarts']:.0f} | "
          f"{r['failed_seeds']}/{r['seeds']} |")
by = {r["strategy"]: r for r in reports}
d = reports[0]
for other in ["optuna-tpe", "random", "tpe-local"]:
    o = by.get(other)
    if not o:
        continue
    for unit, key in [("trials", "median_trials_to_target"), ("seconds", "median_seconds_to_target")]:
        if d[key] is not None and o[key]:
            print(f"default / {other}: {d[key] / o[key]:.2f}x the {unit}")
PY
