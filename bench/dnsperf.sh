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
# Needs: dnsperf and knot (Debian packages; installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs: one for the server, one for dnsperf" >&2
  exit 1
fi

cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The query mix, seeded.
python3 - "$work/queries.txt" <<'PY'
import random, sys
random.seed(20261123)
with open(sys.argv[1], "w") as f:
    for _ in range(50000):
        r = random.random()
        if r < 0.90:
            f.write(f"s{random.randrange(10)}.bench.example.com A\n")
        elif r < 0.95:
            f.write(f"nx{random.randrange(1_000_000)}.bench.example.com A\n")
        else:
            f.write(f"s{random.randrange(10)}.bench.example.com AAAA\n")
PY

# Meridian: s0..s9 steered over three regions, one answer drawn by weight.
mport=$(free_port)
{
  cat <<YAML
zones:
  bench.example.com:
    ttl: 300
    soa: {rname: hostmaster.example.com., minimum: 60}
    ns: [{name: ns1, addresses: [127.0.0.1]}]
    steered:
YAML
  for i in $(seq 0 9); do
    echo "      - {name: s$i, type: A, ttl: 30, pool: web, steps: [health, weighted, {first: 1}]}"
  done
  cat <<YAML
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.10, region: eu-west, weight: 50}
      - {id: us, address: 198.51.100.10, region: us-east, weight: 30}
      - {id: ap, address: 203.0.113.10, region: ap-south, weight: 20}
YAML
} > "$work/zones.yaml"
cat > "$work/meridian.yaml" <<YAML
dns:
  listen: ["127.0.0.1:$mport"]
  udp_sockets: 1
log:
  level: warn
zones: zones.yaml
YAML

# Knot: the same names as static records with one address each.
kport=$(free_port)
mkdir -p "$work/knot"
{
  echo '$ORIGIN bench.example.com.'
  echo '$TTL 300'
  echo '@ IN SOA ns1 hostmaster.example.com. 1 3600 600 1209600 60'
  echo '@ IN NS ns1'
  echo 'ns1 IN A 127.0.0.1'
  for i in $(seq 0 9); do echo "s$i 30 IN A 192.0.2.10"; done
} > "$work/knot/bench.example.com.zone"
cat > "$work/knot/knot.conf" <<CONF
server:
    rundir: "$work/knot"
    listen: 127.0.0.1@$kport
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$work/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.example.com
    storage: "$work/knot"
    file: "bench.example.com.zone"
CONF

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_ready() { # port
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 s0.bench.example.com A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not answer" >&2
  return 1
}

run_one() { # name port pid
  local name=$1 port=$2 pid=$3
  wait_ready "$port"
  # warm-up, then the measured run
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l 2 -q 500 >/dev/null 2>&1 || true
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$secs" -q 500 > "$work/$name.out" 2>&1
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$work/$name.out" "$before" "$after" "$ticks" "$work/results.tsv" <<'PY'
import re, sys
name, out, before, after, ticks, results = sys.argv[1:]
text = open(out).read()
def grab(label):
    m = re.search(label + r":\s+([0-9.]+)", text)
    return float(m.group(1)) if m else float("nan")
completed = grab("Queries completed")
lost = grab("Queries lost")
qps = grab("Queries per second")
lat = grab("Average Latency \\(s\\)")
cpu = (int(after) - int(before)) / int(ticks)
per_cpu = completed / cpu if cpu > 0 else float("nan")
with open(results, "a") as f:
    f.write(f"{name}\t{qps:.0f}\t{lat*1e6:.0f}\t{int(completed)}\t{int(lost)}\t{cpu:.2f}\t{per_cpu:.0f}\n")
PY
}

: > "$work/results.tsv"
( cd "$work" && exec taskset -c 0 "$OLDPWD/target/release/meridian" serve --config meridian.yaml >/dev/null 2>"$work/meridian.err" ) &
mpid=$!; pids+=("$mpid")
run_one meridian "$mport" "$mpid"
kill "$mpid"; wait "$mpid" 2>/dev/null || true

taskset -c 0 knotd -c "$work/knot/knot.conf" 2>"$work/knot.err" &
kpid=$!; pids+=("$kpid")
run_one knot "$kport" "$kpid"
kill "$kpid"; wait "$kpid" 2>/dev/null || true

echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "versions: meridian $(target/release/meridian --version | cut -d' ' -f2), $(knotd --version | head -1), $(dnsperf -h 2>&1 | grep ^Version)"
echo "run: ${secs}s per server, server on CPU 0, dnsperf on CPU 1 (-q 500), mix 90% steered A / 5% NXDOMAIN / 5% NODATA"
echo
python3 - "$work/results.tsv" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print(f"{'server':<10}{'q/s':>10}{'avg lat µs':>12}{'completed':>12}{'lost':>8}{'server CPU s':>14}{'q/CPU-s':>10}")
for r in rows:
    print(f"{r[0]:<10}{r[1]:>10}{r[2]:>12}{r[3]:>12}{r[4]:>8}{r[5]:>14}{r[6]:>10}")
by = {r[0]: float(r[6]) for r in rows}
if "meridian" in by and "knot" in by and by["knot"] > 0:
    print(f"\nmeridian / knot, queries per server CPU-second: {by['meridian'] / by['knot']:.2f}")
PY
