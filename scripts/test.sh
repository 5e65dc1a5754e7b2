#!/usr/bin/env bash
# Runs Meridian's whole test suite, installing what the tests need first.
# The end-to-end tests query the real server with `dig` (bind9-dnsutils).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dig >/dev/null 2>&1; then
  echo "installing bind9-dnsutils (dig) for the end-to-end tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bind9-dnsutils >/dev/null
fi

cargo test --workspace --all-targets
