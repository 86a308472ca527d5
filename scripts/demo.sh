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
source scripts/example-deployment.sh
provision_and_build
deployment="$repo/results/example-deployment"
rm -rf "$repo/results/example-tiny"
copy_example_deployment "$deployment"

trap '"$servetune" server stop --target "$deployment/target.toml" >/dev/null 2>&1 || true' EXIT
"$servetune" tune --study "$deployment/study.toml" --results-dir "$repo/results" "$@"
cmp -s examples/deployment/config.properties "$deployment/config.properties" \
    && echo "config.properties is byte-identical to the original after the study"
echo "recommended configs: results/example-tiny/recommended/<tier>/ (see summary.md, *.svg)"
