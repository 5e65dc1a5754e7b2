#!/usr/bin/env bash
# Property-based run of schemathesis (PyPI) against the OpenAPI document of
# a running node: `meridian dev` on loopback, with its session admin token.
# It fails on any 5xx and on any response that breaks the schema (status,
# content type, headers, body). Opt-in: it takes minutes and installs
# schemathesis into target/schemathesis-venv.
#
#   bench/schemathesis.sh [SECONDS]     (default 300: the fuzzing budget)
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-300}"
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
cargo build -q --bin meridian
out=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$out"' EXIT
target/debug/meridian dev --listen 127.0.0.1:0 --api 127.0.0.1:0 >"$out/dev.out" 2>"$out/dev.err" &
pid=$!
for _ in $(seq 100); do
  grep -q "MERIDIAN_TOKEN=" "$out/dev.out" 2>/dev/null && break
  sleep 0.2
done
line=$(grep -o "MERIDIAN_SERVER=[^ ]* MERIDIAN_TOKEN=[^ ]*" "$out/dev.out")
server=${line#MERIDIAN_SERVER=}; server=${server%% *}
token=${line##*MERIDIAN_TOKEN=}
echo "schemathesis $("$venv/bin/st" --version | awk '{print $3}') against http://$server (budget ${budget}s)"
"$venv/bin/st" run "http://$server/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-time "$budget" --workers 1 --request-timeout 30 \
  --suppress-health-check all \
  --report junit --report-dir target/schemathesis
