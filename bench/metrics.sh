#!/usr/bin/env bash
# What metrics cost.
#
# 1. Counting: Meridian answering with `dns.metrics: true` against
#    `false` (every answer counted into its thread's block, or not), each
#    pinned to CPU 0 with dnsperf on CPU 1, alternating twice; queries per
#    server CPU-second.
# 2. A scrape at 10 000 endpoints: a one-node cluster whose spec has 100
#    checked pools of 100 endpoints and 100 steered records; 10 scrapes of
#    /metrics 1.1 s apart (past the one-second reuse); time, size, and the
#    node's CPU per scrape, its idle CPU subtracted.
#
# Usage: bench/metrics.sh [SECONDS]   (default 10 per segment)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh

install_debs dnsperf bind9-dnsutils curl
cargo build --release --quiet
clean_on_exit
bin="$PWD/target/release/meridian"

# --- 1. counting ------------------------------------------------------
write_queries "$work/queries.txt"
: > "$work/results.tsv"
alternate metrics-on metrics-off MERIDIAN_METRICS=false

# --- 2. a scrape at 10 000 endpoints -----------------------------------
sdir="$work/scrape"; mkdir -p "$sdir"
python3 - "$sdir/zones.yaml" <<'PY'
import sys
out = ["zones:", "  big.example.com:", "    soa: {rname: hostmaster.example.com.}",
       "    ns: [{name: ns.example.net.}]", "    steered:"]
for p in range(100):
    out.append(f"      - {{name: s{p}, type: A, pool: p{p}, steps: [health, weighted, {{first: 1}}]}}")
out.append("regions: {eu: {}, us: {}, ap: {}}")
out.append("pools:")
for p in range(100):
    out.append(f"  p{p}:")
    out.append("    check: {kind: tcp, port: 80, regions: [eu, us, ap], interval: 10s}")
    out.append("    endpoints:")
    for e in range(100):
        out.append(f"      - {{id: e{e}, address: 10.{p}.{e // 250}.{e % 250 + 1}, region: eu}}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
dport=$(free_port); aport=$(free_port)
( cd "$sdir" && "$bin" token secret --file cluster.secret >/dev/null && "$bin" token new --scope read --file tokens > read.token )
cat > "$sdir/meridian.yaml" <<YAML
dns: {listen: ["127.0.0.1:$dport"], udp_sockets: 1}
data_dir: data
log: {level: warn}
zones: zones.yaml
cluster:
  id: 1
  listen: "127.0.0.1:$aport"
  members: {1: "127.0.0.1:$aport"}
  secret: cluster.secret
  tokens: tokens
YAML
( cd "$sdir" && exec "$bin" serve --config meridian.yaml >/dev/null 2>serve.err ) &
spid=$!; pids+=("$spid")
wait_ready "$dport" s0.big.example.com
token=$(cat "$sdir/read.token")
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$aport/metrics" > "$sdir/one.txt"
# the node's CPU while idle for as long as the scrapes take, then 10
# scrapes 1.1 s apart (a scrape is reused for a second: each of these is
# worked out anew)
sleep 2
idle0=$(cpu_ticks "$spid"); sleep 11; idle1=$(cpu_ticks "$spid")
before=$(cpu_ticks "$spid")
: > "$sdir/times"
for _ in $(seq 1 10); do
  curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://127.0.0.1:$aport/metrics" >> "$sdir/times"
  sleep 1.1
done
after=$(cpu_ticks "$spid")

echo
machine_line
echo "versions: meridian $("$bin" --version | cut -d' ' -f2), $(dnsperf -h 2>&1 | grep ^Version)"
echo
echo "Counting: ${secs}s segments, server on CPU 0, dnsperf on CPU 1 (-q 500)"
report metrics-off-1
echo
python3 - "$idle0" "$idle1" "$before" "$after" "$(getconf CLK_TCK)" "$sdir/one.txt" "$sdir/times" <<'PY'
import sys
idle0, idle1, before, after, tck, one, times = sys.argv[1:]
text = open(one).read()
series = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
walls = [float(t) for t in open(times).read().split()]
cpu = ((int(after) - int(before)) - (int(idle1) - int(idle0))) / int(tck) / len(walls)
print("A scrape at 10 000 endpoints (100 pools of 100, 3 probe regions each, 100 steered records):")
print(f"  {sum(walls) / len(walls) * 1000:.1f} ms per scrape (wall, curl included; max {max(walls) * 1000:.1f}), "
      f"{cpu * 1000:.1f} ms of node CPU per scrape (idle CPU subtracted), "
      f"{len(text) / 1024:.0f} KiB, {series} series")
PY
