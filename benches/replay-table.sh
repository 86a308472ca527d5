#!/usr/bin/env bash
# The replay benchmark table: every servetune strategy and Optuna's TPE on
# the same recorded landscape and seeds. Installs Optuna into a cached venv.
# Usage: benches/replay-table.sh [LANDSCAPE.csv] [SLO_P99_MS] [SEEDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
landscape="${1:-benches/landscapes/tiny-cpu.csv}"
slo="${2:-40}"
seeds="${3:-30}"
cache="${SERVETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servetune}"
venv="$cache/venv-optuna"
if ! "$venv/bin/python" -c 'import optuna' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q optuna==4.5.0 >&2
fi
cargo build --release --quiet
rows=()
for strategy in default grid random hill-climb nelder-mead tpe tpe-local; do
    rows+=("$(target/release/servetune replay --landscape "$landscape" --strategy "$strategy" --seeds "$seeds" --slo-p99-ms "$slo" --json)")
done
rows+=("$("$venv/bin/python" benches/optuna_replay.py "$landscape" --seeds "$seeds" --slo-p99-ms "$slo")")
python3 - "$landscape" "$slo" "$seeds" "${rows[@]}" <<'PY'
import json, sys
landscape, slo, seeds = sys.argv[1:4]
reports = [json.loads(r) for r in sys.argv[4:]]
first = reports[0]
print(f"landscape {landscape}: {first['points']} configs, best feasible mean {first['best_feasible_throughput_rps']:.1f} req/s at p99 <= {slo} ms; target regret 3%, {seeds} seeds")
print("| strategy | median trials to target | p90 | failed seeds |")
print("|---|---|---|---|")
show = lambda v: "failed" if v is None else f"{v:.1f}"
for r in reports:
    print(f"| {r['strategy']} | {show(r['median_trials_to_target'])} | {show(r['p90_trials_to_target'])} | {r['failed_seeds']}/{r['seeds']} |")
by = {r["strategy"]: r["median_trials_to_target"] for r in reports}
d = reports[0]["median_trials_to_target"]
for other in ["optuna-tpe", "random"]:
    o = by.get(other)
    if d is not None and o:
        print(f"default / {other}: {d / o:.2f}x the trials")
PY
