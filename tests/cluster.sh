#!/usr/bin/env bash
# Runs N perdure hosts (default 3) on one PostgreSQL database, on this
# machine: a server in a temporary folder, the host and the examples built
# with `cargo xtask build`, the examples dropped into the first host's
# folder only (the others load them from the database). Host i serves on
# 127.0.0.1:70(6+i)1 (7071, 7081, 7091), its dashboard one port up.
# Ctrl-C stops the hosts and the server and removes the folder.
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql).
set -euo pipefail

hosts=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "PostgreSQL's server binaries are not installed (set PGBIN to their folder)" >&2
    exit 1
fi
work=$(mktemp -d /tmp/perdure-cluster.XXXXXX)
port=${PGPORT:-54400}
# initdb refuses to run as root: the server runs as `postgres` then.
as_server() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres: "$work"

pids=()
stop() {
    # A second Ctrl-C (or a signal to the whole group) must not cut the
    # clean-up short.
    trap '' INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
    as_server "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

as_server "$pgbin/initdb" -D "$work/data" -U perdure --auth=trust -E UTF8 \
    --locale=C.UTF-8 -N >/dev/null
as_server "$pgbin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
    -o "-k $work -p $port -c listen_addresses=127.0.0.1" start >/dev/null
url="postgres://perdure@127.0.0.1:$port/postgres"
echo "PostgreSQL: $url (log: $work/postgres.log)"

(cd "$root" && cargo xtask build)
key=${PERDURE_MASTER_KEY:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
export PERDURE_MASTER_KEY=$key

for i in $(seq 1 "$hosts"); do
    dir="$work/host$i"
    mkdir -p "$dir/functions"
    [ "$i" = 1 ] && cp "$root"/functions/*.wasm "$dir/functions/"
    listen="127.0.0.1:70$((6 + i))1"
    dashboard="127.0.0.1:70$((6 + i))2"
    "$root/target/release/perdure" serve --db "$url" --host-id "host$i" \
        --listen "$listen" --dashboard-listen "$dashboard" \
        --functions "$dir/functions" --cache-dir "$work/cache$i" \
        2> >(sed -u "s/^/[host$i] /" >&2) &
    pids+=("$!")
    echo "host$i: http://$listen (dashboard http://$dashboard)"
done
echo "master key: $key"
echo "try: PERDURE_MASTER_KEY=$key $root/target/release/perdure cluster --url http://127.0.0.1:7071"
wait "${pids[@]}"
