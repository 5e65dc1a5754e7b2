#!/usr/bin/env bash
# Proxy mode's overhead: the same small GET (`/hello`, a 12-byte body from
# an nginx backend) sent directly to the backend, through Meridian's proxy
# mode, and through nginx as a reverse proxy (proxy_pass with pooled
# upstream connections), in the same run. The proxy under test is pinned
# to CPU 0; the backend (one worker) and wrk share CPU 1.
# - latency: wrk -c1 (one request at a time), p50 and p99; the proxy's
#   added latency is the difference from the direct run;
# - throughput: wrk -c32, requests per second and, for the proxies,
#   requests per CPU-second of the proxy process.
#
#   bench/proxy.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh
install_debs nginx wrk
cargo build --release --quiet -p meridian
bin=target/release/meridian
clean_on_exit

bport=$(free_port); mport=$(free_port); nport=$(free_port); dport=$(free_port)
cat > "$work/zones.yaml" <<YAML
zones:
  app.example:
    soa: {rname: hostmaster.app.example.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, pool: web, http: proxy, steps: [health, {first: 1}]}
pools:
  web:
    endpoints:
      - {id: local, address: 127.0.0.1, region: eu, proxy_url: "http://backend.example:$bport"}
YAML
cat > "$work/meridian.yaml" <<YAML
dns: {listen: ["127.0.0.1:$dport"], udp_sockets: 1, rrl: {enabled: false}, amplification_factor: 0}
log: {level: warn}
zones: zones.yaml
http:
  listen: ["127.0.0.1:$mport"]
YAML
nginx_conf() { # file body...
  local file=$1; shift
  cat > "$file" <<CONF
worker_processes 1;
pid $file.pid;
error_log $file.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  $*
}
CONF
}
nginx_conf "$work/backend.conf" "server { listen 127.0.0.1:$bport; location / { return 200 'hello world\n'; } }"
nginx_conf "$work/proxy.conf" "upstream backend { server 127.0.0.1:$bport; keepalive 64; }
  server { listen 127.0.0.1:$nport; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ''; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } }"

worker_of() { pgrep -P "$1" | head -1; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null -H 'Host: www.app.example' "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

measure() { # name port [pid]
  local name=$1 port=$2 pid=${3:-} before after
  local args=(--latency -H "Host: www.app.example" "http://127.0.0.1:$port/hello")
  taskset -c 1 wrk -t1 -c32 -d2s "${args[@]}" >/dev/null
  taskset -c 1 wrk -t1 -c1 -d"${secs}s" "${args[@]}" > "$work/$name.c1"
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c32 -d"${secs}s" "${args[@]}" > "$work/$name.c32"
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  python3 - "$name" "$work/$name" "${before:-0}" "${after:-0}" "$(getconf CLK_TCK)" <<'PY'
import re, sys
name, base, before, after, ticks = sys.argv[1:]
def read(suffix):
    text = open(base + suffix).read()
    total = int(re.search(r"(\d+) requests in", text).group(1))
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return total, rps, lat, int(errors.group(1)) if errors else 0
t1, r1, l1, e1 = read(".c1")
t32, r32, l32, e32 = read(".c32")
cpu = (int(after) - int(before)) / int(ticks)
per_cpu = f"{t32 / cpu:>8.0f} req/CPU-s" if cpu else "       -           "
print(f"{name:<9} c1: p50 {l1['50']:>8} p99 {l1['99']:>8} | c32: {r32:>8.0f} req/s {per_cpu}  p50 {l32['50']:>8} p99 {l32['99']:>8}  non-2xx {e1 + e32}")
PY
}

machine_line
echo "versions: meridian $("$bin" --version | cut -d' ' -f2), $(nginx -v 2>&1 | cut -d/ -f2), $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
echo "run: ${secs}s each at -c1 and -c32; the proxy on CPU 0, backend (nginx, 1 worker) and wrk -t1 on CPU 1"
taskset -c 1 nginx -c "$work/backend.conf" -g 'daemon off;' &
pids+=($!)
wait_http "$bport"
measure direct "$bport"
taskset -c 0 "$bin" serve --config "$work/meridian.yaml" > "$work/m.out" 2> "$work/m.err" &
pids+=($!); mpid=$!
wait_http "$mport"
curl -s -D - -o /dev/null -H 'Host: www.app.example' "http://127.0.0.1:$mport/hello" | grep -i '^\(HTTP\|x-meridian\|via\)' | tr -d '\r' | sed 's/^/meridian: /'
measure meridian "$mport" "$mpid"
kill "$mpid"
taskset -c 0 nginx -c "$work/proxy.conf" -g 'daemon off;' &
pids+=($!); npid=$!
wait_http "$nport"
measure nginx "$nport" "$(worker_of "$npid")"
