#!/usr/bin/env bash
# Leave-one-model-out test of the landscape model (`servetune replay
# --prior`): for each landscape recorded for it (tiny, echo, small,
# ResNet-50, BERT-base at 16 users; the same and GPT-2 small at 4), the model is
# fitted on the *other* landscapes recorded at the same load (`users=` in
# the first line) only, and the
# default strategy is replayed on the left-out one from nothing and
# started from the model's prediction (the left-out model's features from
# its landscape's first line), over the same seeds. Prints median trials
# and seconds to within TARGET regret of the best feasible config, their
# ratios, the most ratio any prior could reach (it needs the baseline and
# one guess: `most_trials_ratio`), the share of seeds where the prior needed at most half the
# trials (paired: both arms draw the same repeats), the regret of the
# model's first prediction, the landscape's repeat noise near its top
# (`repeat_noise`: two windows of one config, root mean square of their
# difference over their mean, configs within 20 % of the best; what a
# regret of a few percent is judged against), and how well the
# model predicted the left-out landscape config by config (median
# throughput error, rank correlation: what its bandwidths are chosen by).
#
# The objective on each landscape is "max throughput with p99 ≤ the
# landscape's median p99 over its configs": an SLO half of its configs meet,
# the same rule for models whose latencies differ 50-fold.
# Usage: benches/landscape-prior.sh [SEEDS] [TARGET_REGRET]
# ($SERVETUNE_BIN: a servetune binary to run instead of a release build.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds="${1:-30}"
regret="${2:-0.05}"
if [[ -z "${SERVETUNE_BIN:-}" ]]; then
    cargo build --release --quiet
    SERVETUNE_BIN="$PWD/target/release/servetune"
fi
landscapes=(tiny-cpu echo-cpu small-cpu resnet50-cpu bert-cpu tiny-cpu-u4 echo-cpu-u4 small-cpu-u4 resnet50-cpu-u4 bert-cpu-u4 gpt2-cpu)
users_of() { sed -n '1s/.* users=\([0-9]*\).*/\1/p' "benches/landscapes/$1.csv"; }
rows=()
skipped=()
for left_out in "${landscapes[@]}"; do
    csv="benches/landscapes/$left_out.csv"
    priors=()
    for other in "${landscapes[@]}"; do
        if [[ "$other" != "$left_out" && "$(users_of "$other")" == "$(users_of "$left_out")" ]]; then
            priors+=("benches/landscapes/$other.csv")
        fi
    done
    if ((${#priors[@]} == 0)); then
        skipped+=("$left_out: no other landscape recorded at its load ($(users_of "$left_out") users): not replayed")
        continue
    fi
    slo="$(python3 - "$csv" <<'PY'
import csv, statistics, sys
from collections import defaultdict
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if not l.startswith("#"))]
header, data = rows[0], rows[1:]
p99 = header.index("p99_ms")
params = [i for i, c in enumerate(header) if c not in ("throughput_rps", "p50_ms", "p99_ms", "error_rate", "memory_mb")]
by = defaultdict(list)
for r in data:
    by[tuple(r[i] for i in params)].append(float(r[p99]))
print("%.1f" % statistics.median(statistics.mean(v) for v in by.values()))
PY
)"
    rows+=("$("$SERVETUNE_BIN" replay --landscape "$csv" --prior "$(IFS=,; echo "${priors[*]}")" \
        --slo-p99-ms "$slo" --seeds "$seeds" --target-regret "$regret" --json 2>/dev/null)")
done
python3 - "$seeds" "$regret" "${rows[@]}" <<'PY'
import json, math, sys
seeds, regret = sys.argv[1:3]
reports = [json.loads(r) for r in sys.argv[3:]]
print(f"leave-one-model-out, {seeds} seeds, target: within {float(regret) * 100:.0f} % of the best feasible mean "
      f"(SLO: each landscape's median p99)")
print("| left out | users | SLO p99 | configs | trials from nothing | with the prior | ratio | at most | seeds 2x | seconds from nothing | with the prior | ratio | first prediction | its regret | repeat noise | throughput error | rank correlation |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
show = lambda v: "failed" if v is None else f"{v:.1f}"
show_share = lambda v: "—" if v is None else f"{v * 100:.1f} %"
def paired_twice(a, b):
    # Both arms draw the same repeat for the n-th measurement of a config
    # (common random numbers), so seed by seed is a paired comparison.
    pairs = list(zip(a["trials_per_seed"], b["trials_per_seed"]))
    won = sum(1 for x, y in pairs if y is not None and (x is None or 2 * y <= x))
    return f"{won * 100 / len(pairs):.0f} %"
for r in reports:
    a, b, p = r["without_prior"], r["with_prior"], r["prediction"]
    print(f"| {r['model']} | {r['users']} | {a['slo_p99_ms']:.0f} ms | {a['points']} | {show(a['median_trials_to_target'])} | "
          f"{show(b['median_trials_to_target'])} | {show(r['trials_ratio'])}x | {show(r['most_trials_ratio'])}x | {paired_twice(a, b)} | {show(a['median_seconds_to_target'])} | "
          f"{show(b['median_seconds_to_target'])} | {show(r['seconds_ratio'])}x | {r['first_prediction']} | "
          f"{r['first_prediction_regret'] * 100:.1f} % | {show_share(r['repeat_noise'])} | {(math.exp(p['median_log_error']) - 1) * 100:.0f} % | "
          f"{p['rank_correlation']:.2f} |")
twice = sum(1 for r in reports if (r["trials_ratio"] or 0) >= 2)
close = sum(1 for r in reports if r["first_prediction_regret"] <= 0.10)
possible = [r for r in reports if (r["most_trials_ratio"] or 0) >= 2]
twice_possible = sum(1 for r in possible if (r["trials_ratio"] or 0) >= 2)
print(f"\nat least 2x fewer trials: {twice} of {len(reports)} left-out landscapes "
      f"({twice_possible} of the {len(possible)} where 2x is possible at all); "
      f"first prediction within 10 % of the best: {close} of {len(reports)}")
PY
for line in "${skipped[@]}"; do echo "$line"; done
