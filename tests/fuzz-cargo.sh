#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers the host owns with cargo-fuzz
# (libFuzzer): each target in fuzz/ runs for SECONDS (default 60).
#
#   tests/fuzz-cargo.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly compiler flags; on this project's stable
# toolchain RUSTC_BOOTSTRAP=1 enables them for the fuzz build only. No
# sanitizer is used (`-s none`): the host is safe Rust, and a panic is a
# finding. Corpora and crashes stay in fuzz/corpus and fuzz/artifacts
# (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_request route journal config identifiers)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  echo "== $target (${seconds}s)"
  log="$(mktemp)"
  status=0
  cargo fuzz run -s none --fuzz-dir fuzz "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+.*DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread|panicked)" "$log" || true
  if [ "$status" -ne 0 ]; then
    # libFuzzer exits non-zero on a crash, a timeout or running out of
    # memory; cargo does on a build error. Either way: look at the log.
    tail -40 "$log" >&2
    echo "FAILED: $target (exit $status; findings, if any, in fuzz/artifacts/$target)" >&2
    exit 1
  fi
done
