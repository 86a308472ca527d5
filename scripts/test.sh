#!/usr/bin/env bash
# Provision TorchServe (idempotent, cached outside the repo) and run the tests
# against it. Under CI=true a missing TorchServe fails the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
cargo test --all-targets --features failpoints "$@"
