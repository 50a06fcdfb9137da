#!/usr/bin/env bash
# Longer runs of the property tests of the parsers the host owns (route
# templates, the host API's route table and path segments, the instance
# filter's query, the journal's answers): arbitrary input must never
# panic and what is written must read back. The README's test command runs
# them with proptest's default 256 cases each; this runs CASES (default
# 100000) each. (cargo-fuzz needs a nightly toolchain, which this project
# does not require; proptest runs on stable.)
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES="${CASES:-100000}" exec cargo test --release -p perdure --lib properties
