#!/usr/bin/env bash
# Compressed soak of `servetune daemon` on the example deployment: a
# production TorchServe under steady light traffic (servetune's own load
# generator, 40 req/s open loop), the daemon watching it idle for a while,
# then one study cycle after another (manual triggers through the API:
# shadow study, decision, canary, probation) for SOAK_MINUTES in all.
#
# Prints the daemon's RSS over time (first and last 5 minutes, peak), its
# CPU while idle-watching, and the production JVM's RSS as a yardstick
# measured in the same run. Figures, not assertions: read the growth line.
#
#   benches/daemon-soak.sh            # 35 minutes
#   SOAK_MINUTES=10 benches/daemon-soak.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes="${SOAK_MINUTES:-35}"
idle_s="${SOAK_IDLE_SECONDS:-300}"
root="$PWD"
bin_dir="$(scripts/setup-torchserve.sh | tail -n 1)"
export SERVETUNE_TORCHSERVE="$bin_dir/torchserve"
cargo build --release -q
bin="$root/target/release/servetune"
work="$(mktemp -d /tmp/servetune-soak.XXXXXX)"
echo "soak: ${minutes} min, work dir $work"

# Production: the example deployment on ports of its own, no token (the
# canary may restart it, which would change the keys under the traffic).
cp examples/deployment/config.properties examples/deployment/target.toml "$work/"
ln -s "$root/examples/deployment/model-store" "$work/model-store"
sed -i -e 's/:8080/:18080/; s/:8081/:18081/; s/:8082/:18082/; s/=7070/=17070/; s/=7071/=17071/; s/=9000/=19000/' \
  "$work/config.properties"
echo "disable_token_authorization=true" >>"$work/config.properties"
sed -e "s#^space = .*#space = \"$root/search-spaces/torchserve-cpu.toml\"#" \
    -e "s#^body = .*#body = \"$root/examples/deployment/bodies/tiny\"#" \
    examples/deployment/study.toml >"$work/study.toml"
cat >"$work/daemon.toml" <<TOML
results_dir = "results"
[api]
listen = "127.0.0.1:19181"
token_file = "token"
[[deployment]]
name = "soak"
study = "study.toml"
mode = "shadow"
budget = "2m"
[deployment.triggers]
schedule = "2099-01-01T03:00:00Z"
[deployment.canary]
probation = "20s"
min_requests = 20
TOML

cleanup() {
  [[ -n "${daemon:-}" ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  [[ -n "${traffic:-}" ]] && kill "$traffic" 2>/dev/null || true
  "$bin" server stop --target "$work/target.toml" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$bin" server start --target "$work/target.toml" >/dev/null
"$bin" bench --url http://127.0.0.1:18080/predictions/tiny --body "$root/examples/deployment/bodies/tiny" \
  --content-type application/octet-stream --rate 40 --duration "$((minutes + 2))m" --no-observe \
  >"$work/traffic.log" 2>&1 &
traffic=$!
"$bin" daemon --config "$work/daemon.toml" 2>"$work/daemon.log" &
daemon=$!
sleep 3
token="$(cat "$work/token")"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The production JVM: the java process whose working directory is production's.
jvm_pid() {
  for pid in $(pgrep java || true); do
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$work/run" ]] && echo "$pid" && return
  done
  true
}
hz="$(getconf CLK_TCK)"
echo "seconds,daemon_rss_kb,phase" >"$work/rss.csv"

# Idle watching: live figures from the access log, no study.
t0="$(cpu_ticks "$daemon")"
sleep "$idle_s"
t1="$(cpu_ticks "$daemon")"
idle_cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$idle_s" 'BEGIN {printf "%.2f", 100 * (b - a) / hz / s}')"
idle_rss="$(rss_kb "$daemon")"
live_rate="$(curl -s http://127.0.0.1:19181/status | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["deployments"][0]["live"]["rate_rps"], 1))')"

# Cycles until the time is up, RSS every 10 s.
start="$(date +%s)"
end=$((start + minutes * 60 - idle_s))
cycles=0
while (($(date +%s) < end)); do
  phase="$(curl -s http://127.0.0.1:19181/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["phase"])')"
  if [[ "$phase" == watching ]]; then
    curl -s -X POST -H "Authorization: Bearer $token" http://127.0.0.1:19181/deployments/soak/tune >/dev/null
    cycles=$((cycles + 1))
  fi
  echo "$(($(date +%s) - start)),$(rss_kb "$daemon"),$phase" >>"$work/rss.csv"
  sleep 10
done
jvm="$(jvm_pid)"
jvm_rss="$( [[ -n "$jvm" ]] && rss_kb "$jvm" || echo 0)"
kill -TERM "$daemon"
wait "$daemon" && exit_code=0 || exit_code=$?
daemon=""

python3 - "$work/rss.csv" <<PY
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
rss = [int(r["daemon_rss_kb"]) / 1024 for r in rows if int(r["daemon_rss_kb"]) > 0]
span = 30  # 5 minutes of 10 s samples
first, last = rss[:span], rss[-span:]
print(f"daemon idle-watching: {float('$idle_cpu'):.2f} % of one core, RSS {int('$idle_rss') / 1024:.1f} MiB, "
      f"live traffic {float('$live_rate'):.1f} req/s in the access log")
print(f"cycles started: $cycles over {len(rows) * 10 / 60:.0f} min; decisions: "
      + open("$work/results/soak/decisions.jsonl").read().count("\n").__str__())
seconds = [int(r["seconds"]) for r in rows if int(r["daemon_rss_kb"]) > 0]
mean_t, mean_r = statistics.fmean(seconds), statistics.fmean(rss)
slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(seconds, rss)) / sum((t - mean_t) ** 2 for t in seconds)
print(f"daemon RSS MiB: first 5 min median {statistics.median(first):.1f}, last 5 min median {statistics.median(last):.1f}, "
      f"range {min(rss):.1f}-{max(rss):.1f}; growth {statistics.median(last) / statistics.median(first):.3f}x, "
      f"trend {slope * 3600:+.2f} MiB/hour (least squares)")
print(f"production JVM RSS (yardstick, same run): {int('$jvm_rss') / 1024:.0f} MiB; "
      f"daemon/JVM {statistics.median(last) / max(int('$jvm_rss') / 1024, 1):.3f}")
print("daemon exit code on SIGTERM: $exit_code")
PY
