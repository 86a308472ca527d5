#!/usr/bin/env bash
# Does tuning on the traffic production really sees matter? On the
# multi-model example (ResNet-50 and BERT-base on one TorchServe):
#
#   1. tune under the steady synthetic mix      (examples/multi-model/study.toml)
#   2. tune on the recorded, varying access log (examples/multi-model/study-replay.toml;
#      REPLAY_BUDGET, default 10m: its windows are 20 s against the first's 4 s;
#      REPLAY_WARM=1: warm-started from the first study, whose recommendations
#      it then measures first on the replay)
#   3. measure each study's balanced recommendation — and the config as
#      found — on both traffics, in alternating rounds (A B C A B C …):
#      the synthetic mix (6 users, 70 % ResNet-50) with `bench --mix`, and
#      the log with `bench --replay` (the study's slice and speed).
#
# Prints one table per traffic: throughput, p99 over all requests, each
# model's p99, medians over ROUNDS rounds. Figures, not assertions; not run
# in CI (about 30 minutes on two cores).
#
#   benches/multi-model-traffic.sh
#   BUDGET=4m ROUNDS=3 benches/multi-model-traffic.sh
#   SKIP_TUNE=/tmp/servetune-mm.XXXX benches/multi-model-traffic.sh   # re-measure earlier studies
#   SKIP_TUNE=… TUNE=study-replay benches/multi-model-traffic.sh      # tune only that one again
#
# A study's "best" is its balanced recommendation, or its max-throughput
# one when the balanced tier keeps the config as found (the confirmation
# could not tell it from the baseline).
#
# Everything runs on a copy of the example in a work dir (the example's
# ports, so nothing else may use them meanwhile).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
budget="${BUDGET:-8m}"
rounds="${ROUNDS:-3}"
source benches/common.sh
example="$root/examples/multi-model"

if [[ -n "${SKIP_TUNE:-}" ]]; then
  work="$SKIP_TUNE"
else
  work="$(mktemp -d /tmp/servetune-mm.XXXXXX)"
  cp "$example"/config.properties "$example"/target.toml "$example"/study.toml "$example"/study-replay.toml \
    "$example"/access_log.log "$work/"
  ln -s "$example/bodies" "$work/bodies"
  sed -i -e "s#^model_store = .*#model_store = \"$root/examples/deployment/model-store\"#" "$work/target.toml"
  sed -i -e "s#^space = .*#space = \"$root/search-spaces/torchserve-cpu.toml\"#" "$work"/study*.toml
  cp "$work/target.toml" "$work/target.pristine.toml"
fi
echo "work dir $work"
target="$work/target.toml"
cleanup() { "$bin" server stop --target "$target" >/dev/null 2>&1 || true; }
trap cleanup EXIT

tune="${TUNE-study study-replay}"
[[ -n "${SKIP_TUNE:-}" && -z "${TUNE:-}" ]] && tune=""
if [[ -n "$tune" ]]; then
  for study in $tune; do
    echo "== tune $study.toml"
    this_budget="$budget"
    warm=()
    if [[ "$study" == study-replay ]]; then
      this_budget="${REPLAY_BUDGET:-10m}"
      [[ -n "${REPLAY_WARM:-}" ]] && warm=(--warm-start "$work/results/multi-model")
    fi
    "$bin" tune --study "$work/$study.toml" --budget "$this_budget" --results-dir "$work/results" "${warm[@]}"
  done
fi

# Puts the deployment on config $1 (a tier folder, or "found") and starts it.
deploy() {
  "$bin" server stop --target "$target" >/dev/null 2>&1 || true
  "$bin" restore --config "$work/config.properties" >/dev/null 2>&1 || true
  cp "$work/target.pristine.toml" "$target"
  "$bin" server start --target "$target" >/dev/null
  if [[ "$1" != found ]]; then
    "$bin" apply --from "$1" --target "$target" --restart >/dev/null
  fi
}

synthetic() {
  "$bin" bench --target "$target" --model resnet50 --body-dir "$work/bodies" --mix resnet50=0.7,bert=0.3 \
    --users 6 --duration 20s --warmup 5s --fixed-window --json --no-save
}
replayed() {
  "$bin" bench --target "$target" --replay "$work/access_log.log" --body-dir "$work/bodies" --speed 1x \
    --from +10s --to +30s --loop --duration 20s --warmup 2s --json --no-save
}

# The balanced tier, or max-throughput when balanced keeps the config as found.
best() {
  local dir="$work/results/$1/recommended"
  [[ -d "$dir" ]] || return 0
  if python3 -c "import json,sys; r=json.load(open('$work/results/$1/report.json')); b=[x for x in r['recommendations'] if x['tier']=='balanced']; sys.exit(0 if b and not b[0]['keep_current'] else 1)"; then
    echo "$dir/balanced"
  else
    echo "$dir/max-throughput"
  fi
}
declare -A configs=(
  [found]=found
  [synthetic-best]="$(best multi-model)"
  [replay-best]="$(best multi-model-replay)"
)
names=(found)
for name in synthetic-best replay-best; do
  if [[ -n "${configs[$name]}" ]]; then
    echo "$name: ${configs[$name]}"
    names+=("$name")
  else
    echo "$name: none (the study recommended nothing: no confirmed candidate met the constraints)"
  fi
done
out="$work/cross.jsonl"
: >"$out"
for round in $(seq 1 "$rounds"); do
  for name in "${names[@]}"; do
    echo "== round $round: $name"
    deploy "${configs[$name]}"
    for traffic in synthetic replayed; do
      "$traffic" | python3 -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'round': $round, 'config': '$name', 'traffic': '$traffic', 'rps': r['throughput_rps'], 'p99': r['latency_ms']['p99'], 'models': {m: f['p99_ms'] for m, f in r.get('models', {}).items()}, 'errors': r['error_rate'], 'mem': (r.get('memory_mb') or {}).get('pss_mean', float('nan'))}))" >>"$out"
    done
  done
done
"$bin" server stop --target "$target" >/dev/null 2>&1 || true
"$bin" restore --config "$work/config.properties" >/dev/null 2>&1 || true
cp "$work/target.pristine.toml" "$target"

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for traffic in ("synthetic", "replayed"):
    print(f"\n{traffic} traffic (median of {max(r['round'] for r in rows)} rounds)")
    print("| config | throughput req/s | p99 ms | resnet50 p99 ms | bert p99 ms | errors | memory MB |")
    print("|---|---|---|---|---|---|---|")
    for config in ("found", "synthetic-best", "replay-best"):
        mine = [r for r in rows if r["traffic"] == traffic and r["config"] == config]
        if not mine:
            continue
        med = lambda f: statistics.median(f(r) for r in mine)
        print(f"| {config} | {med(lambda r: r['rps']):.1f} | {med(lambda r: r['p99']):.0f} | "
              f"{med(lambda r: r['models'].get('resnet50', float('nan'))):.0f} | "
              f"{med(lambda r: r['models'].get('bert', float('nan'))):.0f} | {med(lambda r: r['errors'])*100:.2f}% | {med(lambda r: r['mem']):.0f} |")
PY
for study in multi-model multi-model-replay; do
  echo; echo "$study:"
  python3 -c "
import json
r = json.load(open('$work/results/$study/report.json'))
print(' ', r.get('no_recommendation') or '')
for x in r['recommendations']:
    print(' ', x['tier'], '-', x['description'])"
done
