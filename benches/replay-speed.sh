#!/usr/bin/env bash
# Can a replay keep up? A synthetic access log of two models at each RATE
# (requests/s, evenly spaced, SECONDS long) is replayed against a small
# local server (nginx answering 200 to every POST), then the open loop is
# run at the same rate for as long; prints, per rate, what each asked and
# achieved, the replay's lateness, and the ratio replay / open loop of the
# achieved rates. Asserts nothing (not run in CI).
#
# Installs nginx from Debian if missing. SERVETUNE_BIN names a binary to
# measure instead of building a release one.
# Usage: benches/replay-speed.sh [SECONDS] [RATE...]   (default: 10 s at 500 2000 5000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-10}"
shift || true
rates=("$@")
[[ ${#rates[@]} -gt 0 ]] || rates=(500 2000 5000)

if ! command -v nginx >/dev/null 2>&1; then
    echo "installing nginx (Debian)" >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq nginx-light >/dev/null
fi
# SERVETUNE_BIN: a servetune binary to measure instead of a fresh release build.
servetune="${SERVETUNE_BIN:-}"
if [[ -z "$servetune" ]]; then
    cargo build --release --quiet
    servetune="$(pwd)/target/release/servetune"
fi

work="$(mktemp -d)"
trap 'kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $work;
    proxy_temp_path $work;
    fastcgi_temp_path $work;
    uwsgi_temp_path $work;
    scgi_temp_path $work;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -c "$work/nginx.conf"
sleep 0.5
for model in alpha beta; do
    mkdir -p "$work/bodies/$model"
    printf 'a small body for %s\n' "$model" >"$work/bodies/$model/sample.bin"
done

# A log of RATE requests/s for SECONDS: alpha three in four, beta the rest.
write_log() {
    python3 - "$1" "$seconds" "$2" <<'PY'
import sys
rate, seconds, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as log:
    for i in range(int(rate * seconds)):
        ms = int(i * 1000 / rate)
        s, ms = divmod(ms, 1000)
        model = "beta" if i % 4 == 3 else "alpha"
        log.write(f'2026-11-28T10:{s // 60:02}:{s % 60:02},{ms:03} - /127.0.0.1:1 "POST /predictions/{model} HTTP/1.1" 200 1\n')
PY
}

field() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$1" "$2"
}

printf '%8s  %-28s  %-28s  %-24s  %s\n' "rate/s" "replay sent/asked" "open loop done/asked" "replay lateness ms" "replay/open"
for rate in "${rates[@]}"; do
    write_log "$rate" "$work/access_log.log"
    "$servetune" bench --url "http://127.0.0.1:$port/predictions/alpha" --replay "$work/access_log.log" \
        --body-dir "$work/bodies" --warmup 1s --max-in-flight 512 --json --no-save >"$work/replay.json"
    "$servetune" bench --url "http://127.0.0.1:$port/predictions/alpha" --body "$work/bodies/alpha/sample.bin" \
        --rate "$rate" --warmup 1s --duration "$((seconds - 1))s" --fixed-window --max-in-flight 512 \
        --json --no-save >"$work/open.json"
    sent="$(field "$work/replay.json" 'round(d["replay"]["sent_rps"], 1)')"
    asked="$(field "$work/replay.json" 'round(d["replay"]["asked_rps"], 1)')"
    done_rps="$(field "$work/open.json" 'round(d["throughput_rps"], 1)')"
    late="$(field "$work/replay.json" '"p50 %.2f p99 %.2f" % (d["replay"]["lateness_ms"]["p50"], d["replay"]["lateness_ms"]["p99"])')"
    replay_done="$(field "$work/replay.json" 'd["throughput_rps"]')"
    ratio="$(python3 -c "print(f'{$replay_done / max($done_rps, 1e-9):.3f}')")"
    printf '%8s  %-28s  %-28s  %-24s  %s\n' "$rate" "$sent / $asked" "$done_rps / $rate" "$late" "$ratio"
done
