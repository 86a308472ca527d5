#!/usr/bin/env bash
# Provision a real TorchServe 0.12.0 and the TensorZero gateway for
# servetune's tests and examples.
#
# Idempotent: the Python venv lives outside the git tree (a cache directory)
# and is reused when it is complete; the example model archives are rebuilt
# only when their sources change. The last line printed is the directory that
# holds the `torchserve` executable.
#
# Environment:
#   SERVETUNE_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/servetune)
#   SERVETUNE_VENV    venv directory (default: $SERVETUNE_CACHE/venv-ts-0.12.0)
#   SERVETUNE_MODELS  space-separated example models to build (default: "tiny echo small resnet50 bert gpt2")
#
# Archives: NAME.mar (eager); for the models with a model.py, also
# NAME-ts.mar (TorchScript) and NAME-onnx.mar (ONNX, served by onnxruntime),
# exported offline from the same seeded weights; bert-onnx.mar for BERT;
# echo-onnx.mar (an identity graph) for the ONNX Runtime column's test.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${SERVETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servetune}"
venv="${SERVETUNE_VENV:-$cache_root/venv-ts-0.12.0}"
models="${SERVETUNE_MODELS-tiny echo small resnet50 bert gpt2}"
model_store="$repo_root/examples/deployment/model-store"

log() { echo "setup-torchserve: $*" >&2; }
die() { echo "setup-torchserve: error: $*" >&2; exit 1; }

# --- Java -------------------------------------------------------------------
check_java() {
    if ! command -v java >/dev/null 2>&1; then
        die "Java 17 or newer is required by TorchServe and was not found.
  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y openjdk-17-jre-headless
  Fedora/RHEL:   sudo dnf install -y java-17-openjdk-headless"
    fi
    local version major
    version="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    major="${version%%.*}"
    if [[ "$major" == "1" ]]; then major="$(echo "$version" | cut -d. -f2)"; fi
    if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
        die "Java $version found, TorchServe 0.12.0 needs Java 17 or newer.
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"
    fi
    log "java $version ok"
}

# --- Python venv ------------------------------------------------------------
# torch and pyyaml are needed by the workers but not declared by torchserve.
requirements="torchserve==0.12.0
torch-model-archiver==0.12.0
torch==2.4.1
torchvision==0.19.1
numpy<2
pyyaml==6.0.2
pillow==10.4.0
psutil==6.0.0
packaging==24.1"
stamp="$(echo "$requirements" | sha256sum | cut -c1-16)"

venv_complete() {
    [[ -f "$venv/.servetune-complete" ]] \
        && [[ "$(cat "$venv/.servetune-complete")" == "$stamp" ]] \
        && [[ -x "$venv/bin/torchserve" ]] \
        && [[ -x "$venv/bin/torch-model-archiver" ]] \
        && "$venv/bin/python" -c 'import torch, torchvision, yaml, ts' >/dev/null 2>&1
}

ensure_venv() {
    if venv_complete; then
        log "venv $venv is complete, reusing it"
        return
    fi
    log "building venv $venv (torch is large: this takes a few minutes)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    local python="${SERVETUNE_PYTHON:-python3}"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    echo "$requirements" >"$venv/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --no-cache-dir -r "$venv/requirements.txt" >&2
    "$venv/bin/python" -c 'import torch, torchvision, yaml, ts' \
        || die "venv $venv was installed but torch/torchvision/yaml/ts do not import"
    echo "$stamp" >"$venv/.servetune-complete"
    log "venv ready"
}

# --- The gateway and the text models' libraries -----------------------------
# Installed on top of TorchServe's venv, with a stamp of their own so adding
# them never rebuilds torch. tensorzero's wheel embeds the real Rust gateway;
# `_start_http_gateway`, which servetune runs it with, is private: pinned.
# transformers builds BERT and GPT-2; tokenizers trains their vocabularies.
extras="tensorzero==2026.6.0
transformers==4.44.2
tokenizers==0.19.1"
extras_stamp="$(echo "$extras" | sha256sum | cut -c1-16)"

ensure_extras() {
    if [[ -f "$venv/.servetune-extras" ]] \
        && [[ "$(cat "$venv/.servetune-extras")" == "$extras_stamp" ]] \
        && "$venv/bin/python" -c 'import tensorzero, transformers, tokenizers' >/dev/null 2>&1; then
        log "gateway and text-model libraries are installed"
        return
    fi
    log "installing the TensorZero gateway and transformers into $venv"
    echo "$extras" >"$venv/requirements-extras.txt"
    "$venv/bin/python" -m pip install --quiet --no-cache-dir -r "$venv/requirements-extras.txt" >&2
    "$venv/bin/python" -c 'import tensorzero; tensorzero._start_http_gateway' \
        || die "tensorzero was installed but has no _start_http_gateway (is it 2026.6.0?)"
    echo "$extras_stamp" >"$venv/.servetune-extras"
}

# --- ONNX Runtime ------------------------------------------------------------
# TorchServe's base handler opens an .onnx serialized file as an onnxruntime
# session when onnxruntime imports; onnx is what torch.onnx.export writes
# with. Pinned (numpy<2 wheels for Python 3.8-3.12), with a stamp of their own.
onnx_extras="onnxruntime==1.19.2
onnx==1.16.2"
onnx_stamp="$(echo "$onnx_extras" | sha256sum | cut -c1-16)"

ensure_onnx() {
    if [[ -f "$venv/.servetune-onnx" ]] \
        && [[ "$(cat "$venv/.servetune-onnx")" == "$onnx_stamp" ]] \
        && "$venv/bin/python" -c 'import onnxruntime, onnx' >/dev/null 2>&1; then
        log "onnxruntime and onnx are installed"
        return
    fi
    log "installing onnxruntime and onnx into $venv"
    echo "$onnx_extras" >"$venv/requirements-onnx.txt"
    "$venv/bin/python" -m pip install --quiet --no-cache-dir -r "$venv/requirements-onnx.txt" >&2
    "$venv/bin/python" -c 'import onnxruntime, onnx' || die "onnxruntime/onnx were installed but do not import"
    echo "$onnx_stamp" >"$venv/.servetune-onnx"
}

# The archives a model's build writes: NAME.mar, and NAME-ts.mar and
# NAME-onnx.mar when its build exports the other runtimes.
archives_of() {
    local name="$1" src="$2"
    echo "$name.mar"
    if grep -q "example_shape=" "$src/build.py"; then
        echo "$name-ts.mar"
        echo "$name-onnx.mar"
    elif grep -q -E "onnx_export=|export_identity" "$src/build.py"; then
        echo "$name-onnx.mar"
    fi
}

# --- Example model archives -------------------------------------------------
build_models() {
    mkdir -p "$model_store"
    local name src digest marker borrowed
    for name in $models; do
        src="$repo_root/examples/models/$name"
        [[ -d "$src" ]] || die "no example model '$name' under $src"
        # (A build that names another model's handler depends on it too.)
        borrowed="$(sed -n 's|.*here.parent / "\([a-z0-9_]*\)" / "handler.py".*|examples/models/\1/handler.py|p' "$src/build.py")"
        digest="$(find "$src" "$repo_root/examples/models/common" ${borrowed:+"$repo_root/$borrowed"} -type f ! -name '*.pyc' | sort | xargs sha256sum | sha256sum | cut -c1-16)"
        marker="$model_store/.$name.src"
        local archives complete=true archive
        archives="$(archives_of "$name" "$src")"
        for archive in $archives; do
            [[ -f "$model_store/$archive" ]] || complete=false
        done
        if [[ "$complete" == true && -f "$marker" && "$(cat "$marker")" == "$digest" ]]; then
            log "model archive $name.mar is up to date"
            continue
        fi
        log "building model archive $name.mar"
        "$venv/bin/python" "$src/build.py" \
            --archiver "$venv/bin/torch-model-archiver" \
            --export-path "$model_store" >&2
        for archive in $archives; do
            [[ -f "$model_store/$archive" ]] || die "build of $name did not produce $archive"
        done
        echo "$digest" >"$marker"
    done
}

check_java
ensure_venv
ensure_extras
ensure_onnx
build_models
echo "$venv/bin"
