# Shared by the dnsperf benchmark scripts: installing the tools, free
# ports, server CPU time, readiness, one measured dnsperf run, the report.
# Source it from a script that has set `work` (a scratch directory) and
# `secs` (seconds per measured segment).

install_debs() { # package...
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

# From here on, processes whose ids the script adds to `pids` are killed,
# and `$work` removed, when it exits however it ends.
clean_on_exit() {
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

free_port() { # [host]
  python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

cpu_ticks() { # pid: utime + stime of the whole process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

wait_ready() { # port name
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p "$1" +time=1 +tries=1 "$2" A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not answer" >&2
  return 1
}

# The seeded query mix: 90% A at the steered names s0..s9, 5% NXDOMAIN,
# 5% NODATA (AAAA at the same names).
write_queries() { # file
  python3 - "$1" <<'PY'
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
}

# Measures one server: a 2 s warm-up, then one dnsperf segment per extra
# argument set (e.g. one per ECS option; "" for none), each `secs` long,
# with dnsperf on CPU 1. Appends a row to $work/results.tsv.
measure() { # name port pid [dnsperf-extra-args]...
  local name=$1 port=$2 pid=$3
  shift 3
  local segments=("$@")
  [ ${#segments[@]} -gt 0 ] || segments=("")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l 2 -q 500 ${segments[0]} >/dev/null 2>&1 || true
  local before after i=0
  before=$(cpu_ticks "$pid")
  : > "$work/$name.out"
  for seg in "${segments[@]}"; do
    # shellcheck disable=SC2086
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$secs" -q 500 $seg >> "$work/$name.out" 2>&1
    i=$((i + 1))
  done
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$work/$name.out" "$before" "$after" "$(getconf CLK_TCK)" "$work/results.tsv" "$i" <<'PY'
import re, sys
name, out, before, after, ticks, results, runs = sys.argv[1:]
text = open(out).read()
def total(label):
    return sum(float(v) for v in re.findall(label + r":\s+([0-9.]+)", text))
completed, lost = total("Queries completed"), total("Queries lost")
lat = re.findall(r"Average Latency \(s\):\s+([0-9.]+)", text)
lat = sum(float(x) for x in lat) / max(len(lat), 1)
qps = total("Queries per second") / int(runs)
cpu = (int(after) - int(before)) / int(ticks)
per_cpu = completed / cpu if cpu > 0 else float("nan")
with open(results, "a") as f:
    f.write(f"{name}\t{qps:.0f}\t{lat*1e6:.0f}\t{int(completed)}\t{int(lost)}\t{cpu:.2f}\t{per_cpu:.0f}\n")
PY
}

# Latency at a fixed, light load: `secs` seconds at 1 000 queries per
# second (dnsperf -Q 1000, every answer's time printed with -v), dnsperf
# on CPU 1. Appends a row to $work/latency.tsv.
latency() { # name port [dnsperf-extra-args]
  local name=$1 port=$2 extra=${3:-}
  # shellcheck disable=SC2086
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$secs" -Q 1000 -v $extra > "$work/$name.lat" 2>&1 || true
  python3 - "$name" "$work/$name.lat" "$work/latency.tsv" <<'PY'
import re, sys
name, out, results = sys.argv[1:]
times = sorted(float(t) for t in re.findall(r"^> \S+ \S+ \S+ ([0-9.]+)$", open(out).read(), re.M))
n = len(times)
avg = sum(times) / n if n else float("nan")
p99 = times[min(n - 1, int(n * 0.99))] if n else float("nan")
with open(results, "a") as f:
    f.write(f"{name}\t{n}\t{avg*1e6:.0f}\t{p99*1e6:.0f}\n")
PY
}

latency_report() {
  python3 - "$work/latency.tsv" <<'PY'
import sys
print(f"{'server':<10}{'answers':>10}{'avg µs':>10}{'p99 µs':>10}   (at 1 000 q/s)")
for r in (l.rstrip("\n").split("\t") for l in open(sys.argv[1])):
    print(f"{r[0]:<10}{r[1]:>10}{r[2]:>10}{r[3]:>10}")
PY
}

report() { # baseline-name
  python3 - "$work/results.tsv" "$1" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
base = sys.argv[2]
print(f"{'server':<10}{'q/s':>10}{'avg lat µs':>12}{'completed':>12}{'lost':>8}{'server CPU s':>14}{'q/CPU-s':>10}")
for r in rows:
    print(f"{r[0]:<10}{r[1]:>10}{r[2]:>12}{r[3]:>12}{r[4]:>8}{r[5]:>14}{r[6]:>10}")
by = {r[0]: float(r[6]) for r in rows}
if "meridian" in by and by.get(base, 0) > 0:
    print(f"\nmeridian / {base}, queries per server CPU-second: {by['meridian'] / by[base]:.2f}")
PY
}

# Writes Meridian's benchmark zone and node config into $work: s0..s9
# steered with `steps` over one endpoint in each of three regions.
meridian_files() { # port steps [extra node-config line]
  local port=$1 steps=$2 extra=${3:-}
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
      echo "      - {name: s$i, type: A, ttl: 30, pool: web, steps: $steps}"
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
  listen: ["127.0.0.1:$port"]
  udp_sockets: 1
  # dnsperf from one address measures throughput, it is no attack:
  # bench/rrl.sh measures what rate limiting costs
  rrl: ${MERIDIAN_RRL:-"{enabled: false}"}
  amplification_factor: 0
  metrics: ${MERIDIAN_METRICS:-true}
$extra
log: {level: warn}
zones: zones.yaml
YAML
}

# Two Meridian servers on the benchmark zone (s0..s9 weighted), the
# second written with one more environment setting for meridian_files
# (e.g. MERIDIAN_RRL=...), both pinned to CPU 0 and measured alternately,
# twice: NAME_A-1, NAME_B-1, NAME_A-2, NAME_B-2 in results.tsv. Needs
# `bin`, the binary.
alternate() { # name-a name-b setting-for-b
  local a_port b_port a_pid b_pid
  a_port=$(free_port)
  meridian_files "$a_port" "[health, weighted, {first: 1}]" "data_dir: data-$1"
  mv "$work/meridian.yaml" "$work/$1.yaml"
  b_port=$(free_port)
  ( export "$3"; meridian_files "$b_port" "[health, weighted, {first: 1}]" "data_dir: data-$2" )
  mv "$work/meridian.yaml" "$work/$2.yaml"
  ( cd "$work" && exec taskset -c 0 "$bin" serve --config "$1.yaml" >/dev/null 2>"$1.err" ) &
  a_pid=$!; pids+=("$a_pid")
  ( cd "$work" && exec taskset -c 0 "$bin" serve --config "$2.yaml" >/dev/null 2>"$2.err" ) &
  b_pid=$!; pids+=("$b_pid")
  wait_ready "$a_port" s0.bench.example.com
  wait_ready "$b_port" s0.bench.example.com
  # both done starting (the leader's first writes, the allocator's
  # background work) before either is measured: the first segment of a
  # run was otherwise up to 13 % slow, whichever server it measured
  sleep 5
  for round in 1 2; do
    measure "$1-$round" "$a_port" "$a_pid"
    measure "$2-$round" "$b_port" "$b_pid"
  done
  kill "$a_pid" "$b_pid"
}

# Knot DNS serving bench.example.com from $work/knot: the zone file with
# the apex records and the given lines, and a config in DIR listening on
# PORT with one worker of each kind (and MODULE's lines, e.g. mod-rrl).
knot_zone() { # record-line...
  mkdir -p "$work/knot"
  {
    echo '$ORIGIN bench.example.com.'
    echo '$TTL 300'
    echo '@ IN SOA ns1 hostmaster.example.com. 1 3600 600 1209600 60'
    echo '@ IN NS ns1'
    echo 'ns1 IN A 127.0.0.1'
    printf '%s\n' "$@"
  } > "$work/knot/bench.example.com.zone"
}

knot_conf() { # dir port [module]
  mkdir -p "$1"
  cat > "$1/knot.conf" <<CONF
server:
    rundir: "$1"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$1/db"
log:
  - target: stderr
    any: warning
${3:-}
zone:
  - domain: bench.example.com
    storage: "$work/knot"
    file: "bench.example.com.zone"
CONF
}

machine_line() {
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
}
