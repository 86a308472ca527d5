# Sourced by the bench scripts that drive a real TorchServe with servetune:
# sets SERVETUNE_TORCHSERVE (provisioned when unset) and `bin`, the
# servetune to run ($SERVETUNE_BIN, else a release build). Run from the
# repository root.
if [[ -z "${SERVETUNE_TORCHSERVE:-}" ]]; then
  bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
  export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
fi
if [[ -z "${SERVETUNE_BIN:-}" ]]; then
  cargo build --release -q
  SERVETUNE_BIN="$PWD/target/release/servetune"
fi
bin="$SERVETUNE_BIN"
