#!/usr/bin/env bash
# Replicated state: a 3-node cluster of release builds on loopback
# (127.0.0.11-13), driven by bench/cluster-load.
#
#   1. commit -> visible: 1000 sequential weight changes; after each is
#      acknowledged, every node's SOA serial (the state version) is polled
#      over UDP until it shows the write.
#   2. write throughput and latency: 20k weight changes from 1 and from 16
#      concurrent clients to the leader.
#   3. the REST API: the same weight changes as `PATCH /v1/pools/web/
#      endpoints/ID`: PATCH -> visible everywhere, throughput from 1 and 16
#      clients, and the API's cost to the leader's DNS: dnsperf against it
#      alone, then while 16 clients PATCH through its API.
#   4. store size: 100k writes with snapshots every 5000 entries (the
#      default: log compacted after each), then 100k on a fresh cluster with
#      snapshots effectively off; RSS of each node and the size on disk of
#      its Raft store (the journal) and snapshot file.
#
# All processes share this machine's CPUs; nothing is pinned.
# Usage: bench/cluster.sh [WRITES]   (default 100000 for step 3)
set -euo pipefail
cd "$(dirname "$0")/.."
big=${1:-100000}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh

install_debs bind9-dnsutils dnsperf
cargo build --release --quiet -p meridian -p meridian-cluster-load
bin=target/release/meridian
load=target/release/meridian-cluster-load
clean_on_exit

meridian_files 0 "[health, weighted, {first: 1}]"
# the nodes prove themselves with a cluster secret; the load generator and
# `cluster status` write and read with an admin token
"$bin" token secret --file "$work/cluster.secret" > /dev/null
MERIDIAN_TOKEN=$("$bin" token new --scope admin --file "$work/tokens" 2>/dev/null)
export MERIDIAN_TOKEN

# start_cluster NAME SNAPSHOT_EVERY: three nodes in $work/NAME; sets
# api_addrs, dns_addrs, node_pids
start_cluster() {
  local name=$1 every=$2 dir="$work/$1" members="" id
  mkdir -p "$dir"
  cp "$work/zones.yaml" "$work/cluster.secret" "$work/tokens" "$dir/"
  local apis=() dnss=()
  for id in 1 2 3; do
    apis+=("127.0.0.1$id:$(free_port "127.0.0.1$id")")
    dnss+=("127.0.0.1$id:$(free_port "127.0.0.1$id")")
    members+="    $id: \"${apis[$((id - 1))]}\""$'\n'
  done
  node_pids=()
  for id in 1 2 3; do
    cat > "$dir/n$id.yaml" <<YAML
dns:
  listen: ["${dnss[$((id - 1))]}"]
  udp_sockets: 1
  rrl: {enabled: false}
data_dir: data-$id
log: {level: warn}
zones: zones.yaml
cluster:
  id: $id
  listen: "${apis[$((id - 1))]}"
  snapshot_every: $every
  secret: cluster.secret
  tokens: tokens
  members:
$members
YAML
    "$bin" serve --config "$dir/n$id.yaml" > "$dir/n$id.out" 2> "$dir/n$id.err" &
    pids+=($!)
    node_pids+=($!)
  done
  api_addrs=("${apis[@]}")
  dns_addrs=$(IFS=,; echo "${dnss[*]}")
  # healthy, and seeded: every node serves the zone
  for _ in $(seq 1 100); do
    if "$bin" cluster status --api "${apis[0]}" >/dev/null 2>&1; then
      local seeded=0 a
      for a in "${dnss[@]}"; do
        [ -n "$(dig @"${a%:*}" -p "${a##*:}" +short +time=1 +tries=1 bench.example.com SOA)" ] && seeded=$((seeded + 1))
      done
      [ "$seeded" -eq 3 ] && return 0
    fi
    sleep 0.2
  done
  echo "cluster $name did not become healthy" >&2
  "$bin" cluster status --api "${apis[0]}" >&2 || true
  exit 1
}

# sizes NAME: RSS of each node and the size of its store and snapshot
sizes() {
  local dir="$work/$1" i=0 pid
  for pid in "${node_pids[@]}"; do
    i=$((i + 1))
    local rss raft snap
    rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    raft=$(du -sk "$dir/data-$i/raft" | cut -f1)
    snap=$(du -sk "$dir/data-$i/snapshots" | cut -f1)
    echo "  node $i: RSS $((rss / 1024)) MiB, Raft store $((raft / 1024)) MiB ($raft KiB), snapshot dir $snap KiB"
  done
  "$bin" cluster status --api "${api_addrs[0]}" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for i, v in sorted(s.items()):
    last, snap, purged = v.get("last_log_index"), v.get("snapshot_index"), v.get("purged_index")
    print(f"  node {i}: last log {last}, snapshot at {snap}, purged to {purged}")'
}

# api_cost: dnsperf against the leader's DNS alone, then while 16 clients
# PATCH weights through the leader's API (a bounded 60000 writes, stopped
# when dnsperf ends)
api_cost() {
  local leader dns qps
  leader=$("$bin" cluster status --api "${api_addrs[0]}" --json | python3 -c '
import json, sys
print(next(iter(json.load(sys.stdin).values()))["leader"])')
  IFS=, read -r -a dns <<< "$dns_addrs"
  dns=${dns[$((leader - 1))]}
  write_queries "$work/queries.txt"
  qps() { dnsperf -s "${dns%:*}" -p "${dns##*:}" -d "$work/queries.txt" -l 10 -q 500 2>&1 | awk '/Queries per second/{print $4}'; }
  echo "  leader $leader, DNS $dns: alone $(qps) queries/s"
  "$load" --via api --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes 60000 --concurrency 16 > "$work/patch.json" &
  local lp=$!
  sleep 1
  local loaded before after
  before=$("$bin" cluster status --api "${api_addrs[0]}" --json | python3 -c '
import json, sys
print(max(v["version"] for v in json.load(sys.stdin).values()))')
  loaded=$(qps)
  after=$("$bin" cluster status --api "${api_addrs[0]}" --json | python3 -c '
import json, sys
print(max(v["version"] for v in json.load(sys.stdin).values()))')
  kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  echo "  under PATCH load: $loaded queries/s, while $(( (after - before) / 10 )) PATCHes/s applied"
}

stop_cluster() {
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

machine_line
echo
start_cluster compacted 5000
echo "== commit -> visible in every node's DNS (1000 writes)"
"$load" --api "${api_addrs[0]}" --endpoints eu,us,ap visibility --writes 1000 --dns "$dns_addrs"
echo "== write throughput, 20000 writes"
"$load" --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes 20000 --concurrency 1
"$load" --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes 20000 --concurrency 16
echo "== REST API: PATCH -> visible in every node's DNS (1000 writes)"
"$load" --via api --api "${api_addrs[0]}" --endpoints eu,us,ap visibility --writes 1000 --dns "$dns_addrs"
echo "== REST API: PATCH throughput, 20000 writes"
"$load" --via api --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes 20000 --concurrency 1
"$load" --via api --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes 20000 --concurrency 16
echo "== REST API's cost to the leader's DNS (dnsperf 10 s, -q 500; alone, then under 16 PATCH clients)"
api_cost
echo "== $big writes, snapshot every 5000 entries (log compacted)"
"$load" --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes "$big" --concurrency 16
sleep 3
sizes compacted
stop_cluster

start_cluster uncompacted 100000000
echo "== $big writes, no snapshot (log kept whole)"
"$load" --api "${api_addrs[0]}" --endpoints eu,us,ap throughput --writes "$big" --concurrency 16
sleep 3
sizes uncompacted
stop_cluster
