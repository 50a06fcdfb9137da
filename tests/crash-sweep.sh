#!/usr/bin/env bash
# The crash-point sweep: the real binary aborts at every commit point of
# its writer (before and after SQLite's COMMIT) and at 20 timed points
# while the examples run; each restart must complete every instance with
# the output of a run without faults, apply every entity signal exactly
# once and run every activity at least once. Prints one line per point and
# a summary. Bounded: the workload has a few dozen commits (about 30 s on
# 2 cores after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test -p perdure-tests --test e2e crash_points::a_crash_at_every_commit_point \
    -- --ignored --nocapture
