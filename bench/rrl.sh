#!/usr/bin/env bash
# What response rate limiting costs, and what it saves a victim.
#
# 1. Cost: Meridian with RRL on (at a rate no client reaches, so every
#    answer goes through the table and none is limited) against RRL off,
#    each pinned to CPU 0 with dnsperf on CPU 1, alternating twice;
#    queries per server CPU-second.
# 2. Reflection: queries for a large TXT answer "from" a victim address
#    (127.0.0.77, spoofed with a raw socket: needs root), at a fixed rate,
#    to Meridian without limits, with RRL alone (20/s, slip 2), with its
#    production defaults (RRL and the amplification bound 10x), Knot without RRL and
#    Knot with its rrl module (rate-limit 20, slip 2), one after another
#    in the same run; the bytes per second that reach the victim.
#
# Usage: bench/rrl.sh [SECONDS]   (default 10 per segment)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
# shellcheck source=bench/lib.sh
. bench/lib.sh

install_debs dnsperf knot bind9-dnsutils
cargo build --release --quiet
clean_on_exit
bin="$PWD/target/release/meridian"

# --- 1. cost ---------------------------------------------------------
write_queries "$work/queries.txt"
: > "$work/results.tsv"
alternate rrl-off rrl-on "MERIDIAN_RRL={rate: 1000000}"

# --- 2. reflection ---------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "the reflection run spoofs a source address with a raw socket: run as root" >&2
  report rrl-off-1
  exit 1
fi
txt=$(python3 -c 'print(" ".join("\"" + "r" * 200 + f"{i:02}" + "\"" for i in range(5)))')
ydir="$work/m"; mkdir -p "$ydir"
cat > "$ydir/zones.yaml" <<YAML
zones:
  bench.example.com:
    soa: {rname: hostmaster.example.com., minimum: 60}
    ns: [{name: ns1, addresses: [127.0.0.1]}]
    records:
      - {name: big, type: TXT, values: [$(echo "$txt" | sed 's/" "/", "/g')]}
YAML
mp_plain=$(free_port); mp_default=$(free_port); mp_rrl=$(free_port)
cat > "$ydir/plain.yaml" <<YAML
dns: {listen: ["127.0.0.1:$mp_plain"], udp_sockets: 1, rrl: {enabled: false}, amplification_factor: 0}
data_dir: data-plain
log: {level: warn}
zones: zones.yaml
YAML
cat > "$ydir/rrl.yaml" <<YAML
dns: {listen: ["127.0.0.1:$mp_rrl"], udp_sockets: 1, amplification_factor: 0}
data_dir: data-rrl
log: {level: warn}
zones: zones.yaml
YAML
cat > "$ydir/default.yaml" <<YAML
dns: {listen: ["127.0.0.1:$mp_default"], udp_sockets: 1}
data_dir: data-default
log: {level: warn}
zones: zones.yaml
YAML
knot_zone "big IN TXT $txt"
kp_plain=$(free_port); kp_rrl=$(free_port)
knot_conf "$work/knot/plain" "$kp_plain"
knot_conf "$work/knot/rrl" "$kp_rrl" $'mod-rrl:\n  - id: limit\n    rate-limit: 20\n    slip: 2\ntemplate:\n  - id: default\n    global-module: mod-rrl/limit'
( cd "$ydir" && exec taskset -c 0 "$bin" serve --config plain.yaml >/dev/null 2>plain.err ) &
pids+=("$!")
( cd "$ydir" && exec taskset -c 0 "$bin" serve --config default.yaml >/dev/null 2>default.err ) &
pids+=("$!")
( cd "$ydir" && exec taskset -c 0 "$bin" serve --config rrl.yaml >/dev/null 2>rrl.err ) &
pids+=("$!")
taskset -c 0 knotd -c "$work/knot/plain/knot.conf" 2>"$work/knot-plain.err" &
pids+=("$!")
taskset -c 0 knotd -c "$work/knot/rrl/knot.conf" 2>"$work/knot-rrl.err" &
pids+=("$!")
for p in "$mp_plain" "$mp_default" "$mp_rrl" "$kp_plain" "$kp_rrl"; do
  wait_ready "$p" big.bench.example.com || { cat "$work"/*.err "$ydir"/*.err >&2; exit 1; }
done

reflect() { # name port
  python3 - "$1" "$2" "$secs" <<'PY'
import socket, struct, sys, threading, time
name, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
victim, server, rate = "127.0.0.77", "127.0.0.1", 10_000
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind((victim, 0))
sink.settimeout(0.2)
vport = sink.getsockname()[1]
got = [0, 0]
stop = threading.Event()
def receive():
    while not stop.is_set():
        try:
            n = len(sink.recv(65536))
            got[0] += n + 28  # with IP and UDP headers
            got[1] += 1
        except socket.timeout:
            pass
t = threading.Thread(target=receive); t.start()
q = struct.pack(">HHHHHH", 0x4242, 0, 1, 0, 0, 1)
for l in b"big.bench.example.com".split(b"."):
    q += bytes([len(l)]) + l
q += b"\0" + struct.pack(">HH", 16, 1)
q += b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)
udp = struct.pack(">HHHH", vport, port, 8 + len(q), 0) + q
ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 socket.inet_aton(victim), socket.inet_aton(server))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
pkt = ip + udp
sent, start = 0, time.monotonic()
while time.monotonic() - start < secs:
    raw.sendto(pkt, (server, 0))
    sent += 1
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
elapsed = time.monotonic() - start
time.sleep(0.5); stop.set(); t.join()
out = len(pkt) * sent / elapsed
print(f"{name:<18}{sent / elapsed:>10.0f}{out / 1e3:>12.0f}{got[1] / elapsed:>12.0f}{got[0] / elapsed / 1e3:>14.0f}{got[0] / max(len(pkt) * sent, 1):>10.2f}")
PY
}

echo
machine_line
echo "versions: meridian $("$bin" --version | cut -d' ' -f2), $(knotd --version | head -1), $(dnsperf -h 2>&1 | grep ^Version)"
echo
echo "RRL cost: ${secs}s segments, server on CPU 0, dnsperf on CPU 1 (-q 500), RRL on at rate 1000000 (no answer limited)"
report rrl-off-1
echo
echo "Reflection: big.bench.example.com TXT (about 1 KB) with EDNS 4096, 10 000 spoofed queries/s from 127.0.0.77 for ${secs}s each"
printf '%-18s%10s%12s%12s%14s%10s\n' server "sent q/s" "sent kB/s" "victim p/s" "victim kB/s" "factor"
reflect "meridian-no-limit" "$mp_plain"
reflect "meridian-rrl" "$mp_rrl"
reflect "meridian-defaults" "$mp_default"
reflect "knot-no-rrl" "$kp_plain"
reflect "knot-rrl" "$kp_rrl"
