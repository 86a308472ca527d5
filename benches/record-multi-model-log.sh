#!/usr/bin/env bash
# Records examples/multi-model/access_log.log: TorchServe's own access log of
# the multi-model example (ResNet-50 and BERT-base on one server) under a
# load that varies the way production's does — ResNet-50's rate follows a
# day in miniature (diurnal), BERT's comes in bursts — sent by two
# `servetune bench --profile` runs at once. The study in
# examples/multi-model/study-replay.toml replays it. Not run in CI.
#
#   benches/record-multi-model-log.sh                 # 60 s, as bundled
#   LENGTH=60 benches/record-multi-model-log.sh OUT.log
#   SERVETUNE_BIN=target/debug/servetune benches/record-multi-model-log.sh
#
# The deployment runs from a copy on ports of its own (28280–28282, gRPC
# 28270–28271, workers from 29800), as TorchServe's defaults run it (one
# worker per model, no batching).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-examples/multi-model/access_log.log}"
length="${LENGTH:-60}"
root="$PWD"
source benches/common.sh
work="$(mktemp -d /tmp/servetune-record.XXXXXX)"
echo "recording ${length}s of mixed traffic, work dir $work"

cp examples/multi-model/config.properties examples/multi-model/target.toml "$work/"
sed -i -e "s#^model_store = .*#model_store = \"$root/examples/deployment/model-store\"#" "$work/target.toml"
sed -i -e 's/:8280/:28280/; s/:8281/:28281/; s/:8282/:28282/; s/=7280/=28270/; s/=7281/=28271/; s/=9800/=29800/' \
  "$work/config.properties"
printf '\n[environment]\nOMP_NUM_THREADS = "1"\n' >>"$work/target.toml"

cleanup() {
  "$bin" server stop --target "$work/target.toml" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$bin" server start --target "$work/target.toml"
bodies=examples/multi-model/bodies
"$bin" bench --target "$work/target.toml" --model resnet50 --body "$bodies/resnet50" \
  --profile "diurnal:min=${RESNET_MIN:-1},max=${RESNET_MAX:-5},period=${length}s" --duration "${length}s" \
  --warmup 0s --json --no-save >"$work/resnet50.json" &
resnet=$!
"$bin" bench --target "$work/target.toml" --model bert --body "$bodies/bert" \
  --profile "burst:base=${BERT_BASE:-1},peak=${BERT_PEAK:-6},every=30s,for=6s" --duration "${length}s" \
  --warmup 0s --json --no-save >"$work/bert.json" &
bert=$!
wait "$resnet" "$bert"
"$bin" server stop --target "$work/target.toml"
log="$work/run/logs/access_log.log"
[[ -s "$log" ]] || { echo "no access log at $log" >&2; exit 1; }
cp "$log" "$out"
echo "wrote $out: $(grep -c 'POST /predictions/' "$out") inference requests"
for model in resnet50 bert; do
  echo "$model: $(grep -c "POST /predictions/$model " "$out") requests"
done
