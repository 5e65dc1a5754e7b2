#!/usr/bin/env bash
# DNS throughput: Meridian against Knot DNS, side by side, in one run.
#
# Each server is pinned to CPU 0 (taskset) with one UDP socket/worker;
# dnsperf is pinned to CPU 1. The query mix is fixed and seeded: 90% steered
# A (static A for Knot), 5% NXDOMAIN, 5% NODATA. Besides dnsperf's figures,
# the script reads each server's CPU time from /proc/PID/stat before and
# after the run and reports queries per second of server CPU: dnsperf
# saturates its own core on this machine, so q/CPU-s is the fair per-core
# figure.
#
# Usage: bench/dnsperf.sh [SECONDS]   (default 20 per server)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh

install_debs dnsperf knot bind9-dnsutils
if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs: one for the server, one for dnsperf" >&2
  exit 1
fi
cargo build --release --quiet
clean_on_exit

write_queries "$work/queries.txt"

# Meridian: s0..s9 steered over three regions, one answer drawn by weight.
mport=$(free_port)
meridian_files "$mport" "[health, weighted, {first: 1}]"

# Knot: the same names as static records with one address each.
kport=$(free_port)
mapfile -t statics < <(for i in $(seq 0 9); do echo "s$i 30 IN A 192.0.2.10"; done)
knot_zone "${statics[@]}"
knot_conf "$work/knot" "$kport"

: > "$work/results.tsv"
( cd "$work" && exec taskset -c 0 "$OLDPWD/target/release/meridian" serve --config meridian.yaml >/dev/null 2>"$work/meridian.err" ) &
mpid=$!; pids+=("$mpid")
taskset -c 0 knotd -c "$work/knot/knot.conf" 2>"$work/knot.err" &
kpid=$!; pids+=("$kpid")
wait_ready "$mport" s0.bench.example.com || { cat "$work/meridian.err" >&2; exit 1; }
wait_ready "$kport" s0.bench.example.com || { cat "$work/knot.err" >&2; exit 1; }
# one server at a time; the idle one uses no CPU
measure meridian "$mport" "$mpid"
measure knot "$kport" "$kpid"
latency meridian "$mport"
latency knot "$kport"

echo
machine_line
echo "versions: meridian $(target/release/meridian --version | cut -d' ' -f2), $(knotd --version | head -1), $(dnsperf -h 2>&1 | grep ^Version)"
echo "run: ${secs}s per server, server on CPU 0, dnsperf on CPU 1 (-q 500), mix 90% steered A / 5% NXDOMAIN / 5% NODATA"
echo
report knot
echo
latency_report
