#!/usr/bin/env bash
# The status page in a real headless browser (opt-in; Debian `chromium`
# and PyPI `websocket-client`, installed when missing): a one-node cluster
# with an embedded probe agent checking two HTTP backends on loopback;
# scripts/status-page.py loads the page, stops a backend, waits for the
# matrix to show it down and up again, fails on console errors, and saves
# a screenshot (default docs/status-page.png).
#
#   scripts/status-page.sh [SCREENSHOT]
set -euo pipefail
cd "$(dirname "$0")/.."
shot=$(realpath -m "${1:-docs/status-page.png}")
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
command -v chromium >/dev/null || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }
python3 -c 'import websocket' 2>/dev/null || pip install --quiet websocket-client
cargo build --quiet --bin meridian
bin="$PWD/target/debug/meridian"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(port); dns=$(port); pa=$(port); pb=$(port); devtools=$(port)
mkdir -p "$work/site" "$(dirname "$shot")"
echo ok > "$work/site/healthz"
cd "$work"
"$bin" token secret --file cluster.secret >/dev/null
"$bin" token new --scope read --file tokens > read.token 2>/dev/null
cat > zones.yaml <<YAML
regions: {eu: {}}
zones:
  status.test:
    soa: {rname: hostmaster.status.test.}
    ns: [{name: ns.example.net.}]
    steered:
      - {name: www, type: A, ttl: 5, pool: web, steps: [health, weighted, {first: 1}]}
pools:
  web:
    check: {kind: http, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 2, regions: [eu], quorum: 1, stale_after: 3s}
    endpoints:
      - {id: a, address: 192.0.2.1, region: eu, weight: 60, check_address: "127.0.0.1:$pa"}
      - {id: b, address: 192.0.2.2, region: eu, weight: 40, check_address: "127.0.0.1:$pb"}
YAML
cat > meridian.yaml <<YAML
dns: {listen: ["127.0.0.1:$dns"], udp_sockets: 1, rrl: {enabled: false}}
data_dir: data
log: {level: warn}
zones: zones.yaml
probe: {region: eu}
cluster:
  id: 1
  listen: "127.0.0.1:$api"
  members: {1: "127.0.0.1:$api"}
  secret: cluster.secret
  tokens: tokens
YAML
"$bin" serve --config meridian.yaml > serve.log 2>&1 &
pids+=("$!")
python3 -m http.server "$pb" -b 127.0.0.1 -d site > /dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -sf -H "Authorization: Bearer $(cat read.token)" "http://127.0.0.1:$api/readyz" >/dev/null && break
  sleep 0.1
done
chromium --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/chrome" \
  --remote-debugging-address=127.0.0.1 --remote-debugging-port="$devtools" about:blank > chrome.log 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$devtools/json/version" >/dev/null && break
  sleep 0.1
done
python3 "$OLDPWD/scripts/status-page.py" "http://127.0.0.1:$api" "$(cat read.token)" "$devtools" "$dns" "$pa" "$work/site" "$shot"
