#!/usr/bin/env bash
# The main job on the bundled example deployment: provision TorchServe, start
# the example (the `tiny` model, token authorization on), apply a cold change
# with a restart and a hot change through the management API, show what the
# server reports, then restore the original config and stop the server.
# Works on a copy under results/example-deployment/, so the example stays clean.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
cargo build --release --quiet
servetune="$repo/target/release/servetune"

deployment="$repo/results/example-deployment"
rm -rf "$deployment"
mkdir -p "$deployment"
cp examples/deployment/config.properties examples/deployment/target.toml "$deployment/"
ln -s "$repo/examples/deployment/model-store" "$deployment/model-store"
target="$deployment/target.toml"
config="$deployment/config.properties"

stop_server() { "$servetune" server stop --target "$target" >/dev/null 2>&1 || true; }
trap stop_server EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start TorchServe on the example config"
"$servetune" server start --target "$target"

step "cold change: netty threads and queue size need a restart"
"$servetune" apply --config "$config" --target "$target" --restart \
    --set number_of_netty_threads=4 --set job_queue_size=200

step "hot change: batch size and delay by re-registering, workers by scaling"
"$servetune" apply --config "$config" --target "$target" --hot \
    --set models.tiny.batchSize=8 --set models.tiny.maxBatchDelay=10 \
    --set models.tiny.minWorkers=2 --set models.tiny.maxWorkers=2

step "what changed in config.properties (comments and other lines untouched)"
diff -u examples/deployment/config.properties "$config" || true

step "restore the original config and restart on it"
"$servetune" restore --config "$config" --target "$target" --restart
cmp examples/deployment/config.properties "$config" && echo "config.properties is byte-identical to the original"
"$servetune" server status --target "$target"

step "stop TorchServe"
"$servetune" server stop --target "$target"
trap - EXIT
