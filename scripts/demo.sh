#!/usr/bin/env bash
# The main job on the bundled example deployment: provision TorchServe, then
# `servetune tune` the example (the `tiny` model, token authorization on) with
# a short budget: baseline, TorchServe's defaults, a search, confirmation of
# the best, exported recommendations, and the server back on its original
# config. Works on a copy under results/example-deployment/, so the example
# stays clean; the study's files land in results/example-tiny/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
cargo build --release --quiet
servetune="$repo/target/release/servetune"

deployment="$repo/results/example-deployment"
rm -rf "$deployment" "$repo/results/example-tiny"
mkdir -p "$deployment"
cp examples/deployment/config.properties examples/deployment/target.toml examples/deployment/study.toml "$deployment/"
ln -s "$repo/examples/deployment/model-store" "$deployment/model-store"
ln -s "$repo/examples/deployment/bodies" "$deployment/bodies"

trap '"$servetune" server stop --target "$deployment/target.toml" >/dev/null 2>&1 || true' EXIT
"$servetune" tune --study "$deployment/study.toml" --results-dir "$repo/results" "$@"
cmp -s examples/deployment/config.properties "$deployment/config.properties" \
    && echo "config.properties is byte-identical to the original after the study"
echo "recommended configs: results/example-tiny/recommended/<tier>/ (see summary.md, *.svg)"
