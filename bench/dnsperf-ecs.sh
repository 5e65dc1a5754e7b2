#!/usr/bin/env bash
# Geo steering with EDNS Client Subnet: Meridian against gdnsd's geoip
# plugin, side by side, in one run, from the same GeoIP database.
#
# Both map continents to an ordered datacenter list (EU: eu-west, us-east;
# NA: us-east, eu-west; AS: ap-south, eu-west; default us-east) and answer
# the first one's address. Each server is pinned to CPU 0 with one UDP
# thread/socket; dnsperf is pinned to CPU 1 and sends the seeded mix (90%
# steered A, 5% NXDOMAIN, 5% NODATA) in three segments, one per ECS
# subnet: Europe (192.0.2.0/24), America (198.51.100.0/24), Asia
# (203.0.113.0/24). Reported: queries per second of server CPU, and
# latency (average, p99) at a fixed 1 000 q/s of Europe's subnet.
#
# Usage: bench/dnsperf-ecs.sh [SECONDS]   (default 10 per segment)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh

install_debs dnsperf gdnsd bind9-dnsutils
cargo build --release --quiet
clean_on_exit

write_queries "$work/queries.txt"
target/release/meridian demo-geoip "$work/geo" >/dev/null
ecs=(
  "-E 8:00011800c00002"   # 192.0.2.0/24, Europe
  "-E 8:00011800c63364"   # 198.51.100.0/24, America
  "-E 8:00011800cb0071"   # 203.0.113.0/24, Asia
)

# Meridian
mport=$(free_port)
meridian_files "$mport" "[health, {geo: {continents: {EU: [eu-west, us-east], NA: [us-east, eu-west], AS: [ap-south, eu-west]}, default: [us-east]}}, {first: 1}]" "geoip: {city: geo/city.mmdb}"

# gdnsd: the same map with its geoip plugin
gport=$(free_port)
mkdir -p "$work/gdnsd/zones" "$work/gdnsd/run" "$work/gdnsd/state"
cat > "$work/gdnsd/config" <<CONF
options => {
  listen => [ 127.0.0.1 ]
  dns_port => $gport
  udp_threads => 1
  tcp_threads => 1
  run_dir => $work/gdnsd/run
  state_dir => $work/gdnsd/state
}
plugins => {
  geoip => {
    maps => {
      continents => {
        geoip2_db => $work/geo/city.mmdb
        datacenters => [ eu-west, us-east, ap-south ]
        map => {
          default => [ us-east ]
          EU => [ eu-west, us-east ]
          NA => [ us-east, eu-west ]
          AS => [ ap-south, eu-west ]
        }
      }
    }
    resources => {
      web => {
        map => continents
        service_types => up
        dcmap => { eu-west => 192.0.2.10, us-east => 198.51.100.10, ap-south => 203.0.113.10 }
      }
    }
  }
}
CONF
{
  echo '$TTL 300'
  echo '@ SOA ns1 hostmaster.example.com. 1 3600 600 1209600 60'
  echo '@ NS ns1'
  echo 'ns1 A 127.0.0.1'
  for i in $(seq 0 9); do echo "s$i 30 DYNA geoip!web"; done
} > "$work/gdnsd/zones/bench.example.com"

: > "$work/results.tsv"
( cd "$work" && exec taskset -c 0 "$OLDPWD/target/release/meridian" serve --config meridian.yaml >/dev/null 2>"$work/meridian.err" ) &
mpid=$!; pids+=("$mpid")
taskset -c 0 gdnsd -c "$work/gdnsd" start 2>"$work/gdnsd.err" &
gpid=$!; pids+=("$gpid")
wait_ready "$mport" s0.bench.example.com || { cat "$work/meridian.err" >&2; exit 1; }
wait_ready "$gport" s0.bench.example.com || { cat "$work/gdnsd.err" >&2; exit 1; }
# the answers must agree before the numbers mean anything
for s in 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24; do
  m=$(dig @127.0.0.1 -p "$mport" +short +subnet=$s s0.bench.example.com A)
  g=$(dig @127.0.0.1 -p "$gport" +short +subnet=$s s0.bench.example.com A)
  echo "answer for $s: meridian $m, gdnsd $g"
  [ "$m" = "$g" ] || { echo "answers differ" >&2; exit 1; }
done
# one server at a time; the idle one uses no CPU
measure meridian "$mport" "$mpid" "${ecs[@]}"
measure gdnsd "$gport" "$gpid" "${ecs[@]}"
latency meridian "$mport" "${ecs[0]}"
latency gdnsd "$gport" "${ecs[0]}"

echo
machine_line
echo "versions: meridian $(target/release/meridian --version | cut -d' ' -f2), $(gdnsd -h 2>&1 | grep version | head -1), $(dnsperf -h 2>&1 | grep ^Version)"
echo "run: 3 x ${secs}s per server (ECS Europe, America, Asia), server on CPU 0, dnsperf on CPU 1 (-q 500)"
echo
report gdnsd
echo
latency_report
