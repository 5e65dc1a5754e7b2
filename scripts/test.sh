#!/usr/bin/env bash
# Runs Meridian's whole test suite, installing what the tests need first.
# The end-to-end tests query the real server with `dig` (bind9-dnsutils);
# the README's API walkthrough, which one test runs, uses `curl`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} for the end-to-end tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo test --workspace --all-targets
