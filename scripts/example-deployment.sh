# Sourced by the scripts that run the bundled example deployment: provisions
# TorchServe, builds servetune (release) and copies the example deployment.
#   provision_and_build        sets SERVETUNE_TORCHSERVE and $servetune
#   copy_example_deployment D  fresh copy of examples/deployment in D (model
#                              store and bodies linked, not copied)
# Expects to run from the repository root.

provision_and_build() {
    local bin_dir
    bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
    export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
    cargo build --release --quiet
    servetune="$(pwd)/target/release/servetune"
}

copy_example_deployment() {
    local destination="$1"
    rm -rf "$destination"
    mkdir -p "$destination"
    cp examples/deployment/config.properties examples/deployment/target.toml examples/deployment/study.toml "$destination/"
    ln -s "$(pwd)/examples/deployment/model-store" "$destination/model-store"
    ln -s "$(pwd)/examples/deployment/bodies" "$destination/bodies"
}
