#!/usr/bin/env bash
# Memory and time as zones grow: generated zones of N steered records (by
# default 1 000, 10 000 and 100 000) over 100 pools of 30 endpoints in
# three regions, each record with one of `weighted`, `geo`, `nearest` or
# sticky steps. For each N, with a release build pinned to CPU 0:
# - start: from exec until the first answer;
# - RSS once serving;
# - reload: from SIGHUP (the spec with one static record changed) until
#   that record's new answer, and RSS after it;
# - queries per CPU-second (dnsperf on CPU 1, random steered names).
#
#   bench/scale.sh [SECONDS] [N...]   (default 10; 1000 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 100000)
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh
install_debs dnsperf bind9-dnsutils
cargo build --release --quiet -p meridian
bin=target/release/meridian
clean_on_exit
"$bin" demo-geoip "$work/geo" >/dev/null

zone() { # n marker-address > zones.yaml
  python3 - "$1" "$2" <<'PY'
import sys
n, marker = int(sys.argv[1]), sys.argv[2]
steps = [
    "[health, {weighted: {}}, {first: 1}]",
    "[health, {geo: {continents: {EU: [eu], NA: [us], AS: [ap]}, default: [us]}}, {first: 1}]",
    "[health, nearest, {first: 1}]",
    "[health, {weighted: {sticky: true}}, {first: 1}]",
]
out = ["zones:", "  scale.example:", "    soa: {rname: hostmaster.scale.example.}",
       "    ns: [{name: ns.example.net.}]",
       f"    records:\n      - {{name: marker, type: A, value: {marker}}}", "    steered:"]
for i in range(n):
    out.append(f"      - {{name: s{i}, type: A, pool: p{i % 100}, steps: {steps[i % 4]}}}")
out.append("regions:\n  eu: {lat: 50, lon: 8}\n  us: {lat: 39, lon: -77}\n  ap: {lat: 1, lon: 104}")
out.append("pools:")
regions = [("eu", 50, 8), ("us", 39, -77), ("ap", 1, 104)]
for p in range(100):
    out.append(f"  p{p}:\n    endpoints:")
    for e in range(30):
        r, lat, lon = regions[e % 3]
        out.append(f"      - {{id: e{e}, address: 10.{p}.{e}.1, region: {r}, lat: {lat}, lon: {lon}, weight: {1 + e}}}")
print("\n".join(out))
PY
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }

machine_line
echo "versions: meridian $("$bin" --version | cut -d' ' -f2), $(dnsperf -h 2>&1 | grep -m1 -o 'DNSPerf [0-9.]*' || echo dnsperf)"
printf '%-9s %10s %10s %11s %12s %12s\n' records "start ms" "RSS MB" "reload ms" "RSS after MB" "q/CPU-s"
for n in "${sizes[@]}"; do
  port=$(free_port)
  zone "$n" 192.0.2.1 > "$work/zones.yaml"
  cat > "$work/meridian.yaml" <<YAML
dns: {listen: ["127.0.0.1:$port"], udp_sockets: 1, rrl: {enabled: false}, amplification_factor: 0}
geoip: {city: geo/city.mmdb}
log: {level: warn}
zones: zones.yaml
YAML
  python3 - "$n" > "$work/queries.txt" <<'PY'
import random, sys
random.seed(20261130)
n = int(sys.argv[1])
for _ in range(50000):
    print(f"s{random.randrange(n)}.scale.example A")
PY
  t0=$(now_ms)
  taskset -c 0 "$bin" serve --config "$work/meridian.yaml" > "$work/m.out" 2> "$work/m.err" &
  pid=$!; pids+=("$pid")
  dead=""
  until dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short marker.scale.example A 2>/dev/null | grep -q 192.0.2.1; do
    kill -0 "$pid" 2>/dev/null || { dead=1; break; }
    sleep 0.02
  done
  if [ -n "$dead" ]; then
    printf '%-9s refused: %s\n' "$n" "$(grep -m1 'meridian:' "$work/m.err" || tail -1 "$work/m.err")"
    continue
  fi
  start=$(( $(now_ms) - t0 ))
  rss=$(rss_kb "$pid")
  zone "$n" 192.0.2.2 > "$work/zones.yaml"
  t0=$(now_ms)
  kill -HUP "$pid"
  until dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short marker.scale.example A 2>/dev/null | grep -q 192.0.2.2; do
    sleep 0.02
  done
  reload=$(( $(now_ms) - t0 ))
  sleep 1
  rss_after=$(rss_kb "$pid")
  before=$(cpu_ticks "$pid")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$secs" -q 500 > "$work/perf.out" 2>&1
  after=$(cpu_ticks "$pid")
  completed=$(awk '/Queries completed/ {print $3}' "$work/perf.out")
  per_cpu=$(python3 -c "import sys; c=($after-$before)/$(getconf CLK_TCK); print(f'{$completed/c:.0f}' if c else 'nan')")
  printf '%-9s %10s %10s %11s %12s %12s\n' "$n" "$start" "$((rss / 1024))" "$reload" "$((rss_after / 1024))" "$per_cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
