#!/usr/bin/env bash
# The fuzzing run (opt-in, about a minute per 10^6 packets at the default
# rate): starts `meridian serve` with the production defaults (rate
# limiting, cookies, the amplification bound) on a free loopback port, and
# sends it PACKETS mutated and random messages over UDP and TCP at RATE
# per second while a checker asks a valid query every 100 ms
# (scripts/fuzz.py). Fails when the server dies, a check fails, or the
# log shows a panic.
#
#   scripts/fuzz.sh [PACKETS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-1000000}
rate=${2:-25000}
cargo build --release --bin meridian >&2
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/zones.yaml" <<'YAML'
zones:
  fuzz.example.com:
    soa: {rname: hostmaster.example.com., minimum: 60}
    ns: [{name: ns1, addresses: [127.0.0.1]}]
    records:
      - {name: www, type: A, value: 192.0.2.10}
      - {name: www, type: AAAA, value: "2001:db8::10"}
      - {name: alias, type: CNAME, value: www}
      - {name: loop1, type: CNAME, value: loop2}
      - {name: loop2, type: CNAME, value: loop1}
      - {name: "*.wild", type: A, value: 192.0.2.80}
      - {name: "*.wild", type: TXT, value: wild}
      - {name: "@", type: MX, value: "10 www"}
      - {name: "@", type: TXT, value: "fuzz"}
      - {name: deep.x.y, type: TXT, value: deep}
      - {name: sub, type: NS, value: ns.sub}
      - {name: ns.sub, type: A, value: 192.0.2.60}
      - {name: big, type: TXT, values: [BIG]}
    steered:
      - {name: lb, type: A, pool: web, steps: [health, weighted, {first: 2}]}
      - name: geo
        type: A
        pool: web
        steps: [health, {geo: {continents: {EU: [eu], NA: [us]}, default: [us]}}, {first: 1}]
pools:
  web:
    endpoints:
      - {id: eu, address: 192.0.2.1, region: eu, weight: 50}
      - {id: us, address: 198.51.100.1, region: us, weight: 50}
YAML
big=$(python3 -c 'print(", ".join(f"\"part {i:03} " + "x" * 200 + "\"" for i in range(20)))')
sed -i "s/\[BIG\]/[$big]/" "$work/zones.yaml"
cat > "$work/meridian.yaml" <<YAML
dns: {listen: ["127.0.0.1:$port"], udp_sockets: 2}
data_dir: data
log: {level: warn}
zones: zones.yaml
YAML
(cd "$work" && exec "$OLDPWD/target/release/meridian" serve --config meridian.yaml > server.log 2>&1) &
pid=$!
for _ in $(seq 1 100); do
  dig @127.0.0.1 -p "$port" +time=1 +tries=1 www.fuzz.example.com A >/dev/null 2>&1 && break
  sleep 0.1
done
status=0
python3 scripts/fuzz.py 127.0.0.1 "$port" "$pid" --packets "$packets" --rate "$rate" || status=$?
if grep -qi "panic" "$work/server.log"; then
  echo "the server's log shows a panic:" >&2
  grep -i -m5 "panic" "$work/server.log" >&2
  status=1
fi
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
exit "$status"
