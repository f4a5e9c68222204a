#!/usr/bin/env bash
# REST benchmark of ims-control on SQLite and on PostgreSQL: machine creation and
# 10,000-machine listings (bench/README.md, "Control plane").
#
# Knobs (environment): BACKENDS ["sqlite postgres"], MACHINES [10000], CREATE [1000],
# CONCURRENCY [8], LIST_REPEATS [20], PAGE_REQUESTS [1000], PORT [18480],
# PG_ADMIN_URL [postgres://ims_test:ims_test@127.0.0.1:5432/postgres] (a role that may create
# databases; scripts/test.sh creates this one), BUILD [1], OUT [/tmp/ims-api-bench].
# It starts only its own ims-control processes and stops them by PID; the PostgreSQL database it
# creates is dropped on exit, the SQLite data directory removed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKENDS=${BACKENDS:-"sqlite postgres"}
MACHINES=${MACHINES:-10000}
CREATE=${CREATE:-1000}
CONCURRENCY=${CONCURRENCY:-8}
LIST_REPEATS=${LIST_REPEATS:-20}
PAGE_REQUESTS=${PAGE_REQUESTS:-1000}
PORT=${PORT:-18480}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://ims_test:ims_test@127.0.0.1:5432/postgres}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/ims-api-bench}

if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ims-control -p ims-bench
fi
CONTROL=${CONTROL:-target/release/ims-control}
BENCH=${API_BENCH:-target/release/api-bench}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ims-api-bench.XXXXXX)
SERVER_PID=""
PG_DB=""
PASSWORD=bench-$$-$RANDOM

cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$PG_DB" ]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

pg_url_for() { local base=${PG_ADMIN_URL%%\?*}; echo "${base%/*}/$1"; }

for backend in $BACKENDS; do
    data="$WORK/$backend"
    mkdir -p "$data"
    args=(serve --listen "127.0.0.1:$PORT" --data-dir "$data")
    if [ "$backend" = postgres ]; then
        PG_DB="ims_bench_$$"
        psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
        args+=(--database "$(pg_url_for "$PG_DB")")
    fi
    IMS_ADMIN_PASSWORD=$PASSWORD RUST_LOG=warn "$CONTROL" "${args[@]}" >"$OUT/server-$backend.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "ims-control ($backend) exited; see $OUT/server-$backend.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "== $backend ($MACHINES machines, $CREATE timed creates, concurrency $CONCURRENCY)"
    rc=0
    IMS_BENCH_PASSWORD=$PASSWORD timeout 900 "$BENCH" --addr "127.0.0.1:$PORT" --machines "$MACHINES" \
        --create "$CREATE" --concurrency "$CONCURRENCY" --list-repeats "$LIST_REPEATS" \
        --page-requests "$PAGE_REQUESTS" --json >"$OUT/$backend.json" || rc=$?
    jq -r '.[] | "\(.name)\t\(.requests) req x\(.concurrency)\t\(.requests_per_s|floor) req/s\tp50 \(.latency.p50_ms*100|floor/100) ms\tp99 \(.latency.p99_ms*100|floor/100) ms\tfailures \(.failures)"' "$OUT/$backend.json" | column -t -s $'\t'
    [ "$rc" = 0 ] || echo "api-bench exited with $rc (failures above)" >&2
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    if [ -n "$PG_DB" ]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null; PG_DB=""; fi
done
echo "JSON results in $OUT"
