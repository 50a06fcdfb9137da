#!/usr/bin/env bash
# Property-based fuzzing of the host's HTTP API: schemathesis (from PyPI,
# in a virtualenv under target/) generates requests from /openapi.json and
# sends them to a live `perdure` serving the examples, checking that no
# response is a 500, that every response matches the document, and that
# the host is still up at the end. Bounded: MAX_EXAMPLES per operation
# (default 25). `positive_data_acceptance` is left out: the API answers
# 400 for names the document cannot know (an orchestrator, entity or
# operation no app has), as Azure's does.
set -euo pipefail
cd "$(dirname "$0")/.."
max_examples="${MAX_EXAMPLES:-25}"
venv=target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
fi

cargo xtask build >/dev/null
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="fuzz-master-key-0123456789"
PERDURE_MASTER_KEY="$key" PERDURE_LOG=warn target/release/perdure serve \
    --functions functions --db "$work/perdure.db" --listen "127.0.0.1:$port" \
    2>"$work/perdure.log" &
pid=$!
for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/openapi.json" && break
    sleep 0.1
done

status=0
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --header "x-functions-key: $key" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "$max_examples" \
    --generation-deterministic \
    --workers 2 || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
    echo "perdure is not running any more; its log:" >&2
    tail -50 "$work/perdure.log" >&2
    exit 1
fi
if grep -q "panicked" "$work/perdure.log"; then
    echo "perdure panicked:" >&2
    grep -A5 "panicked" "$work/perdure.log" >&2
    exit 1
fi
exit "$status"
