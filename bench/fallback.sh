#!/usr/bin/env bash
# The HTTP fallback's redirects beside nginx's, in the same run: both
# answer `GET /path?q=1` for www.app.example with a 307 chosen by the
# client's continent from the same GeoIP City database (the demo one
# `meridian demo-geoip` writes), the client given by a trusted proxy's
# X-Forwarded-For (192.0.2.7: Europe). Each server is pinned to CPU 0
# (nginx with one worker), wrk to CPU 1 (1 thread, 32 connections); the
# server's CPU time gives redirects per CPU-second.
#
#   bench/fallback.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh
install_debs nginx libnginx-mod-http-geoip2 wrk
cargo build --release --quiet -p meridian
bin=target/release/meridian
clean_on_exit

"$bin" demo-geoip "$work" >/dev/null
mport=$(free_port); nport=$(free_port); dport=$(free_port)
cat > "$work/zones.yaml" <<YAML
zones:
  app.example:
    soa: {rname: hostmaster.app.example.}
    ns: [{name: ns.example.net.}]
    steered:
      - name: www
        type: A
        pool: web
        steps: [health, {geo: {continents: {EU: [eu], NA: [us], AS: [ap]}, default: [us]}}, {first: 1}]
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.10, region: eu, redirect_url: "https://eu.app.example.net{path}"}
      - {id: us, address: 198.51.100.10, region: us, redirect_url: "https://us.app.example.net{path}"}
      - {id: ap, address: 203.0.113.10, region: ap, redirect_url: "https://ap.app.example.net{path}"}
YAML
cat > "$work/meridian.yaml" <<YAML
dns: {listen: ["127.0.0.1:$dport"], udp_sockets: 1, rrl: {enabled: false}, amplification_factor: 0}
geoip: {city: city.mmdb}
log: {level: warn}
zones: zones.yaml
http:
  listen: ["127.0.0.1:$mport"]
  trusted_proxies: [127.0.0.1/32]
  endpoint_header: false
YAML
cat > "$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_geoip2_module.so;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  set_real_ip_from 127.0.0.1;
  real_ip_header X-Forwarded-For;
  geoip2 $work/city.mmdb { \$continent continent code; }
  map \$continent \$target {
    EU https://eu.app.example.net;
    NA https://us.app.example.net;
    AS https://ap.app.example.net;
    default https://us.app.example.net;
  }
  server {
    listen 127.0.0.1:$nport;
    location / { add_header Cache-Control no-store always; return 307 \$target\$request_uri; }
  }
}
CONF

measure_http() { # name port pid
  local name=$1 port=$2 pid=$3 before after
  local args=(-t1 -c32 --latency -H "Host: www.app.example" -H "X-Forwarded-For: 192.0.2.7" "http://127.0.0.1:$port/path?q=1")
  taskset -c 1 wrk -d2s "${args[@]}" >/dev/null
  before=$(cpu_ticks "$pid")
  taskset -c 1 wrk -d"${secs}s" "${args[@]}" > "$work/$name.out"
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$work/$name.out" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import re, sys
name, out, before, after, ticks = sys.argv[1:]
text = open(out).read()
total = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
cpu = (int(after) - int(before)) / int(ticks)
print(f"{name:<10} {rps:>10.0f} req/s  {total / cpu if cpu else float('nan'):>10.0f} req/CPU-s  p50 {lat.get('50')}  p99 {lat.get('99')}  (server CPU {cpu:.2f} s)")
PY
}

machine_line
echo "versions: meridian $("$bin" --version | cut -d' ' -f2), $(nginx -v 2>&1 | cut -d/ -f2), $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
echo "run: ${secs}s each, server on CPU 0, wrk -t1 -c32 on CPU 1, X-Forwarded-For 192.0.2.7 (Europe)"
taskset -c 0 "$bin" serve --config "$work/meridian.yaml" > "$work/m.out" 2> "$work/m.err" &
pids+=($!); mpid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$mport/" -H 'Host: www.app.example' && break; sleep 0.1; done
curl -s -o /dev/null -w "meridian: %{http_code} %{redirect_url}\n" -H 'Host: www.app.example' -H 'X-Forwarded-For: 192.0.2.7' "http://127.0.0.1:$mport/path?q=1"
measure_http meridian "$mport" "$mpid"
taskset -c 0 nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!); npid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$nport/" && break; sleep 0.1; done
# the worker does the work: measure it
wpid=$(pgrep -P "$npid" | head -1)
curl -s -o /dev/null -w "nginx:    %{http_code} %{redirect_url}\n" -H 'Host: www.app.example' -H 'X-Forwarded-For: 192.0.2.7' "http://127.0.0.1:$nport/path?q=1"
measure_http nginx "$nport" "$wpid"
