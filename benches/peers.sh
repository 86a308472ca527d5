#!/usr/bin/env bash
# The load generator against its peers, in one run on one loopback server:
# maximum requests/s with the generator pinned to one core (servetune vs wrk
# vs oha, closed loop, 32 connections), and servetune's own CPU use at a fixed
# 300 requests/s. nginx serves a small file, pinned to the other core.
# Prints medians of REPEATS runs and ratios; asserts nothing.
#
# Installs what it needs: wrk and nginx from Debian, oha from crates.io
# (into the servetune cache). Usage: benches/peers.sh [REPEATS] [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats="${1:-3}"
seconds="${2:-10}"
connections=32
cache="${SERVETUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servetune}"
tools="$cache/tools"

need_apt() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (Debian)" >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null
}
need_apt wrk wrk
need_apt nginx nginx-light
if [[ ! -x "$tools/bin/oha" ]]; then
    echo "installing oha (crates.io) into $tools" >&2
    cargo install oha --locked --root "$tools" >&2
fi
oha="$tools/bin/oha"
cargo build --release --quiet
servetune="$(pwd)/target/release/servetune"

work="$(mktemp -d)"
trap 'kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/www"
printf 'hello from nginx, a small static answer for load generators\n' >"$work/www/index.html"
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
        root $work/www;
    }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf"
url="http://127.0.0.1:$port/index.html"
sleep 0.5
curl -sf "$url" >/dev/null

# Runs a generator pinned to core 1; prints "REQ_PER_S CPU_PERCENT": the
# rate it reached and how much of its core it used doing so (getrusage).
measured() {
    local parser="$1"; shift
    python3 - "$parser" "$@" <<'PY'
import json, re, resource, subprocess, sys, time
parser, cmd = sys.argv[1], sys.argv[2:]
start = time.monotonic()
out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (usage.ru_utime + usage.ru_stime) / wall * 100
if parser == "wrk":
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
elif parser == "oha":
    rps = json.loads(out)["summary"]["requestsPerSec"]
else:
    rps = json.loads(out)["throughput_rps"]
print(f"{rps:.1f} {cpu:.1f}")
PY
}
run_wrk() { measured wrk taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" "$url"; }
run_oha() { measured oha taskset -c 1 "$oha" -c "$connections" -z "${seconds}s" --no-tui --output-format json "$url"; }
run_servetune() {
    measured servetune taskset -c 1 "$servetune" bench --url "$url" --users "$connections" --duration "${seconds}s" --warmup 0s --json --no-save
}
# CPU (% of a core) a command uses over its run, via getrusage of its children.
cpu_of() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{(usage.ru_utime + usage.ru_stime) / wall * 100:.2f}")
PY
}

declare -a w o s
for ((i = 0; i < repeats; i++)); do
    # Rotate the order so no tool always runs first.
    case $((i % 3)) in
        0) s+=("$(run_servetune)"); w+=("$(run_wrk)"); o+=("$(run_oha)") ;;
        1) w+=("$(run_wrk)"); o+=("$(run_oha)"); s+=("$(run_servetune)") ;;
        2) o+=("$(run_oha)"); s+=("$(run_servetune)"); w+=("$(run_wrk)") ;;
    esac
    echo "repeat $((i + 1)) (req/s, % of core 1): servetune ${s[-1]}  wrk ${w[-1]}  oha ${o[-1]}" >&2
done

cpu_servetune="$(cpu_of taskset -c 1 "$servetune" bench --url "$url" --rate 300 --duration 20s --warmup 0s --no-save --json)"
cpu_oha="$(cpu_of taskset -c 1 "$oha" -q 300 -z 20s -c "$connections" --no-tui "$url")"

python3 - "${s[*]}" "${w[*]}" "${o[*]}" "$cpu_servetune" "$cpu_oha" "$repeats" "$seconds" "$connections" <<'PY'
import statistics, sys
def pairs(arg):
    values = [float(x) for x in arg.split()]
    return list(zip(values[0::2], values[1::2]))
runs = {name: pairs(arg) for name, arg in zip(["servetune", "wrk", "oha"], sys.argv[1:4])}
cpu_s, cpu_o = float(sys.argv[4]), float(sys.argv[5])
repeats, seconds, connections = sys.argv[6:9]
rps = {n: statistics.median(r for r, _ in v) for n, v in runs.items()}
cpu = {n: statistics.median(c for _, c in v) for n, v in runs.items()}
# Requests per second of generator CPU: what one fully used core would send.
per_core = {n: statistics.median(r / (c / 100) for r, c in v) for n, v in runs.items()}
print(f"loopback nginx (1 worker) on core 0, generator on core 1, {connections} connections, {seconds}s x {repeats} repeats, medians")
print("| generator | req/s reached | its core busy | req/s per core-second | servetune / it (reached) | servetune / it (per core) |")
print("|---|---|---|---|---|---|")
for n in ["servetune", "wrk", "oha"]:
    print(f"| {n} | {rps[n]:,.0f} | {cpu[n]:.0f}% | {per_core[n]:,.0f} | {rps['servetune'] / rps[n]:.2f}x | {per_core['servetune'] / per_core[n]:.2f}x |")
print(f"CPU at a fixed 300 req/s (20 s, process start included): servetune {cpu_s:.2f}% of a core, oha {cpu_o:.2f}%")
PY
