#!/usr/bin/env bash
# Makes what the compose cluster runs on, in deploy/compose/pki: a CA, a
# certificate per node (role node), per probe agent (role agent, for its
# region) and for an operator, and the metrics listeners' token file
# (pki/metrics-tokens) with one read token, for Prometheus
# (pki/prometheus.token). Uses a local `meridian` binary (or
# target/release/meridian of this checkout).
set -euo pipefail
cd "$(dirname "$0")"
bin=$(command -v meridian || echo ../../target/release/meridian)
[ -x "$bin" ] || { echo "build meridian first: cargo build --release" >&2; exit 1; }
mkdir -p pki
"$bin" tls ca --dir pki
for i in 1 2 3; do
  "$bin" tls cert --dir pki --role node --name "n$i" --host "172.28.0.1$i" --host "n$i"
done
for r in eu-west us-east ap-south; do
  "$bin" tls cert --dir pki --role agent --name "agent-$r" --region "$r"
done
"$bin" tls cert --dir pki --role operator --name operator
"$bin" token new --scope read --file pki/metrics-tokens > pki/prometheus.token
# the containers run as uid 10053 (Prometheus as 65534): give them the
# files, readable by no one else
chmod 0644 pki/*.pem
chmod 0600 pki/*.key pki/metrics-tokens pki/prometheus.token
if [ "$(id -u)" -eq 0 ]; then
  chown 10053:10053 pki/*.key pki/metrics-tokens
  chown 65534:65534 pki/prometheus.token
else
  echo "not root: run 'sudo chown 10053:10053 pki/*.key pki/metrics-tokens' and 'sudo chown 65534 pki/prometheus.token'" >&2
fi
echo "pki/ ready: docker compose -f deploy/compose/compose.yaml up -d --build"
