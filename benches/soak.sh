#!/usr/bin/env bash
# One real soak of the example deployment (the `tiny` model) with
# `servetune bench --soak`: a steady open-loop load for SOAK (default 15m),
# every process's memory sampled each second with its least-squares slope
# (MB/h, 95 % interval), throughput and p99 drift from the first tenth to
# the last, errors, and the verdict. Figures, not assertions; not run in CI.
#
#   benches/soak.sh                          # 15 minutes at 100 req/s
#   SOAK=10m SOAK_RATE=50 benches/soak.sh
#   SERVETUNE_BIN=target/debug/servetune benches/soak.sh   # skip the release build
#
# The deployment runs from a copy on ports of its own (28080–28082, gRPC
# 28070–28071, workers from 29000), so a TorchServe on the example's ports
# is left alone. Leaves timeline.svg and the bench JSON in the work dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${SOAK:-15m}"
rate="${SOAK_RATE:-100}"
root="$PWD"
source benches/common.sh
work="$(mktemp -d /tmp/servetune-soak.XXXXXX)"
echo "soak: $duration at $rate req/s, work dir $work"

cp examples/deployment/config.properties examples/deployment/target.toml "$work/"
ln -s "$root/examples/deployment/model-store" "$work/model-store"
sed -i -e 's/:8080/:28080/; s/:8081/:28081/; s/:8082/:28082/; s/=7070/=28070/; s/=7071/=28071/; s/=9000/=29000/' \
  "$work/config.properties"
printf '\n[environment]\nOMP_NUM_THREADS = "1"\n' >>"$work/target.toml"

cleanup() {
  "$bin" server stop --target "$work/target.toml" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$bin" server start --target "$work/target.toml"
"$bin" bench --target "$work/target.toml" --body examples/deployment/bodies/tiny \
  --rate "$rate" --soak "$duration" --warmup 10s \
  --results-dir "$work/results" --out "$work"
echo "timeline: $work/timeline.svg"
