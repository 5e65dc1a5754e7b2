#!/usr/bin/env bash
# Probe agents: release builds of `meridian serve` and `meridian probe` on
# loopback, driven by bench/probe-load, which serves the checked targets
# itself (HTTP or TCP on 127.0.0.1, one port each).
#
#   1. detection to answer: a 3-node cluster (127.0.0.11-13), agents for
#      eu, us and ap, a check with interval 1s, fall 3, rise 2, quorum 2 of
#      3; a target stops (its listener closed) at a random phase of the
#      probe schedule, and every node's DNS answer is polled (~1 ms) until
#      it leaves the endpoint out; then it restarts, until it is back.
#   2. one agent's capacity at 10 000 targets: the agent pinned to CPU 0,
#      the targets and a single node on CPU 1; checks per second received
#      by the targets, the agent's CPU time and memory (/proc).
#   3. the Raft write rate of probe reports: 3 regions x 1000 endpoints,
#      interval 5s; log entries per second on a 3-node cluster, the size of
#      one report, the nodes' CPU and store growth; then again with a
#      2 MiB log budget, sampling each store's size every second.
#
# Usage: bench/probes.sh [RUNS]   (detection runs, default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release --quiet -p meridian -p meridian-probe-load
load=target/release/meridian-probe-load
# 10 000 listening targets and their connections
ulimit -n "$(ulimit -Hn)"

machine_line
echo
echo "== detection to answer: interval 1s, fall 3, rise 2, $runs runs"
"$load" detect --runs "$runs" --interval-ms 1000 --fall 3 --rise 2
echo "== one agent, 10 000 targets (agent on CPU 0; targets and node on CPU 1)"
for spec in "http 5000" "http 1000" "tcp 1000"; do
  set -- $spec
  taskset -c 1 "$load" --agent-cpu 0 capacity --targets 10000 --kind "$1" --interval-ms "$2" --seconds 30
done
echo "== Raft write rate: 3 regions x 1000 endpoints, interval 5s"
"$load" raft --endpoints 1000 --regions eu,us,ap --interval-ms 5000 --seconds 120
echo "== the same with a 2 MiB log budget (cluster.snapshot_log_mib): the stores stay bounded"
"$load" --snapshot-log-mib 2 raft --endpoints 1000 --regions eu,us,ap --interval-ms 5000 --seconds 240
