#!/usr/bin/env bash
# Uplink benchmark of ims-control (bench/README.md, "Uplink: uplink-bench"): one control plane
# on loopback, EDGES simulated edges (uplink-bench) enrolling with one-time join tokens and
# heartbeating every INTERVAL; the control plane's CPU and memory are sampled from /proc/PID
# once a second, lined up with the generator's set-up phase and steady window, and printed
# with the generator's figures (enrolment, heartbeat round trips, failures).
#
# Knobs (environment): EDGES [2000], DURATION [60] (seconds of steady window, 1-600),
# SETUP_SECONDS [300] (bound of the enrolment/set-up phase), INTERVAL [10s], CONCURRENCY [64]
# (enrolments/set-ups at once), ENDPOINTS [4] (client UDP sockets), HTTP_PORT [18490],
# QUIC_PORT [18491], SERVER_LOG [info] (the server's RUST_LOG), SAMPLE [0.5] (seconds between
# /proc samples), BUILD [1],
# OUT [/tmp/ims-uplink-bench] (report.json, samples.tsv, summary.txt, logs).
# It starts only its own ims-control and stops it by PID; the data directory (SQLite store,
# CA) is a temporary directory removed on exit, Ctrl-C included. Every step runs under
# `timeout`; the server lives only as long as the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EDGES=${EDGES:-2000}
DURATION=${DURATION:-60}
SETUP_SECONDS=${SETUP_SECONDS:-300}
INTERVAL=${INTERVAL:-10s}
CONCURRENCY=${CONCURRENCY:-64}
ENDPOINTS=${ENDPOINTS:-4}
HTTP_PORT=${HTTP_PORT:-18490}
QUIC_PORT=${QUIC_PORT:-18491}
SERVER_LOG=${SERVER_LOG:-info}
SAMPLE=${SAMPLE:-0.5}
BUILD=${BUILD:-1}
OUT=${OUT:-/tmp/ims-uplink-bench}

if [ "$EDGES" -lt 1 ] || [ "$EDGES" -gt 10000 ]; then echo "EDGES: 1 to 10000" >&2; exit 2; fi
if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 600 ]; then echo "DURATION: 1 to 600" >&2; exit 2; fi
if [ "$SETUP_SECONDS" -lt 1 ] || [ "$SETUP_SECONDS" -gt 600 ]; then echo "SETUP_SECONDS: 1 to 600" >&2; exit 2; fi

if [ "$BUILD" = 1 ]; then
    timeout 3600 cargo build --release -q -p ims-control -p ims-bench --bin ims-control --bin uplink-bench
fi
CONTROL=${CONTROL:-target/release/ims-control}
BENCH=${UPLINK_BENCH:-target/release/uplink-bench}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ims-uplink-bench.XXXXXX)
SERVER_PID=""
SAMPLER_PID=""
GEN_PID=""
PASSWORD=bench-$$-$RANDOM$RANDOM
TICKS=$(getconf CLK_TCK)
HTTP="http://127.0.0.1:$HTTP_PORT"

stop_pid() { # PID: TERM, wait up to 5 s, then KILL
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    [ -n "$GEN_PID" ] && stop_pid "$GEN_PID"
    [ -n "$SAMPLER_PID" ] && stop_pid "$SAMPLER_PID"
    [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The store and the listen addresses come from the flags below only.
unset IMS_CONFIG IMS_DATA_DIR IMS_DATABASE_URL IMS_LISTEN IMS_TLS_CERT IMS_TLS_KEY \
    IMS_QUIC_LISTEN IMS_QUIC_NAMES IMS_HEARTBEAT_INTERVAL IMS_LOG_FORMAT

now_ms() { date +%s%3N; }
# "unix_ms cpu_ticks rss_kB hwm_kB threads" of the server, or nothing when it is gone.
sample() {
    local stat rest mem t
    t=$(now_ms)
    stat=$(cat "/proc/$SERVER_PID/stat" 2>/dev/null) || return 1
    mem=$(awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} /^Threads:/ {t = $2} END {print r, h, t}' \
        "/proc/$SERVER_PID/status" 2>/dev/null) || return 1
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo "$t $(( ${12} + ${13} )) $mem"
}

LOAD_BEFORE=$(uptime)
echo "load before: $LOAD_BEFORE" | tee "$OUT/uptime.txt"

IMS_ADMIN_PASSWORD=$PASSWORD RUST_LOG=$SERVER_LOG "$CONTROL" serve --data-dir "$WORK/data" \
    --listen "127.0.0.1:$HTTP_PORT" --quic-listen "127.0.0.1:$QUIC_PORT" \
    --heartbeat-interval "$INTERVAL" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -fsS --max-time 1 "$HTTP/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "ims-control exited; see $OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
grep -q "quic listening on 127.0.0.1:$QUIC_PORT" "$OUT/server.log" \
    || { echo "ims-control does not listen for QUIC on 127.0.0.1:$QUIC_PORT; see $OUT/server.log" >&2; exit 1; }

ACCESS=$(timeout 20 curl -fsS --max-time 15 -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" "$HTTP/api/token/" | jq -r .access)
timeout 20 curl -fsS --max-time 15 -H "authorization: Bearer $ACCESS" -H 'content-type: application/json' \
    -d '{"name":"bench","description":"uplink-bench"}' "$HTTP/api/sites" >/dev/null
timeout 300 "$CONTROL" join-token --data-dir "$WORK/data" --site bench --ttl 2h --count "$EDGES" \
    | tail -n "$EDGES" >"$WORK/tokens.txt"
[ "$(grep -c '^IMS1\.' "$WORK/tokens.txt")" = "$EDGES" ] || { echo "join-token did not print $EDGES tokens" >&2; exit 1; }

IDLE=$(sample)
echo "$IDLE" >"$OUT/samples.tsv"
MAX_SAMPLES=$(awk -v s="$SAMPLE" -v n=$(( SETUP_SECONDS + DURATION + 120 )) 'BEGIN { print int(n / s) + 1 }')
( for _ in $(seq "$MAX_SAMPLES"); do sample || break; sleep "$SAMPLE"; done ) >>"$OUT/samples.tsv" &
SAMPLER_PID=$!

echo "running uplink-bench: $EDGES edges, $CONCURRENCY set-ups at once, then ${DURATION} s of heartbeats (every $INTERVAL)"
GEN_START=$(now_ms)
timeout $(( SETUP_SECONDS + DURATION + 120 )) "$BENCH" --control "127.0.0.1:$QUIC_PORT" \
    --tokens "$WORK/tokens.txt" --seconds "$DURATION" --setup-seconds "$SETUP_SECONDS" \
    --concurrency "$CONCURRENCY" --endpoints "$ENDPOINTS" --json >"$OUT/report.json" 2>"$OUT/generator.log" &
GEN_PID=$!
rc=0
wait "$GEN_PID" || rc=$?
GEN_PID=""
GEN_END=$(now_ms)
sleep 1
AFTER=$(sample || true)
stop_pid "$SAMPLER_PID"
SAMPLER_PID=""

if ! jq -e .edges "$OUT/report.json" >/dev/null 2>&1; then
    echo "uplink-bench failed (exit $rc); see $OUT/generator.log" >&2
    cat "$OUT/generator.log" >&2
    exit 1
fi
FROM=$(jq .steady_from_unix_ms "$OUT/report.json")
TO=$(jq .steady_to_unix_ms "$OUT/report.json")

# CPU % of one core between two samples: the first at or after $1 and the last at or before
# $2 (inner), or with $3 = outer the last at or before $1 and the first at or after $2 (for
# a phase shorter than a few samples).
cpu_pct() {
    awk -v a="$1" -v b="$2" -v mode="${3:-inner}" -v hz="$TICKS" '
        mode == "inner" && $1 >= a && t0 == "" { t0 = $1; c0 = $2 }
        mode == "inner" && $1 <= b { t1 = $1; c1 = $2 }
        mode == "outer" && $1 <= a { t0 = $1; c0 = $2 }
        mode == "outer" && $1 >= b && t1 == "" { t1 = $1; c1 = $2 }
        END { if (t0 == "" || t1 == "" || t1 <= t0) print "n/a"; else printf "%.1f", (c1 - c0) / hz / ((t1 - t0) / 1000) * 100 }
    ' "$OUT/samples.tsv"
}
rss_at() { awk -v b="$1" '$1 <= b { r = $3 } END { printf "%.1f", r / 1024 }' "$OUT/samples.tsv"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
CPU_SETUP=$(cpu_pct "$GEN_START" "$FROM" outer)
CPU_STEADY=$(cpu_pct "$FROM" "$TO")
CPU_ALL=$(cpu_pct "$GEN_START" "$GEN_END")
RSS_IDLE=$(mib "$(echo "$IDLE" | awk '{print $3}')")
RSS_END=$(rss_at "$TO")
RSS_PEAK=$(mib "$(tail -n 1 "$OUT/samples.tsv" | awk '{print $4}')")
RSS_AFTER=$( [ -n "$AFTER" ] && mib "$(echo "$AFTER" | awk '{print $3}')" || echo n/a)
STEADY_S=$(jq .steady_s "$OUT/report.json")
STEADY_HB=$(jq .heartbeats.steady_sent "$OUT/report.json")
CPU_PER_HB=$(awk -v p="$CPU_STEADY" -v s="$STEADY_S" -v n="$STEADY_HB" \
    'BEGIN { if (p == "n/a" || n == 0) print "n/a"; else printf "%.3f", p / 100 * s / n * 1000 }')
THREADS=$(awk -v b="$TO" '$1 <= b { t = $5 } END { print t }' "$OUT/samples.tsv")

{
    echo "== uplink-bench: $EDGES edges, heartbeat every $INTERVAL, ${DURATION} s steady window"
    echo "load before: $LOAD_BEFORE"
    jq -r --arg cs "$CPU_SETUP" --arg cst "$CPU_STEADY" --arg ca "$CPU_ALL" --arg ph "$CPU_PER_HB" \
        --arg ri "$RSS_IDLE" --arg re "$RSS_END" --arg rp "$RSS_PEAK" --arg ra "$RSS_AFTER" --arg th "$THREADS" '
        def r2: (. * 100 | round) / 100;
        def lat: "p50 \(.p50_ms|r2) ms\tp90 \(.p90_ms|r2) ms\tp99 \(.p99_ms|r2) ms\tmax \(.max_ms|r2) ms";
        [
          ["edges connected", "\(.connected) of \(.edges)\t(\(.enrolled) enrolled, \(.alive_at_end) up at the end)"],
          ["enrolment, all edges", "\(.enrol_total_s|r2) s\t(set-ups done after \(.setup_total_s|r2) s)"],
          ["one enrolment", (.enrol|lat)],
          ["one uplink set-up", (.connect|lat)],
          ["heartbeats, steady window", "\(.heartbeats.steady_sent) sent, \(.heartbeats.steady_acked) acked\t(\(.heartbeats.steady_per_s|r2)/s over \(.steady_s|r2) s)"],
          ["heartbeats, whole run", "\(.heartbeats.sent) sent, \(.heartbeats.acked) acked, \(.heartbeats.unacked) unacked"],
          ["heartbeat RTT, steady", (.rtt|lat)],
          ["heartbeat RTT, whole run", (.rtt_all|lat)],
          ["server CPU (% of one core)", "set-up \($cs)\tsteady \($cst)\twhole run \($ca)"],
          ["server CPU per heartbeat", "\($ph) ms (steady window)"],
          ["server RSS (MiB)", "idle \($ri)\tend of steady \($re)\tpeak \($rp)\tafter disconnect \($ra)"],
          ["server threads", $th],
          ["generator CPU", "\(.generator_cpu_s|r2) s over \(.elapsed_s|r2) s"],
          ["failures", (if (.failures|length) == 0 then "none" else (.failures|to_entries|map("\(.key)=\(.value)")|join(" ")) end)]
        ] | .[] | "\(.[0])\t\(.[1])"' "$OUT/report.json" | column -t -s $'\t'
    jq -r '.first_errors // {} | to_entries[] | "  first \(.key): \(.value)"' "$OUT/report.json"
} | tee "$OUT/summary.txt"
[ "$rc" = 0 ] || echo "uplink-bench exited with $rc (failures above)" >&2
echo "results in $OUT (report.json, samples.tsv, summary.txt, server.log, generator.log)"
stop_pid "$SERVER_PID"
SERVER_PID=""
exit "$rc"
