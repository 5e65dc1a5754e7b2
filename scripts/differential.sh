#!/usr/bin/env bash
# The long run of the DNS differential tests (opt-in; the suite runs a few
# thousand cases): Meridian's own query reader against hickory's on
# generated and mutated queries, and the hot path's whole answers against
# the hickory path's, each for CASES cases (default 1 000 000).
#
#   scripts/differential.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES=${1:-1000000} exec cargo test -p meridian-dns --release --lib -- \
  wire::differential hot::tests::hot_answers_are_the_hickory_answers
