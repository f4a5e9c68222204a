#!/usr/bin/env bash
# tftp-compare.sh: a TFTP storm against netbootd (tokio and io_uring drivers), dnsmasq and
# tftpd-hpa, one after the other on the same veth topology in the same run: aggregate MB/s,
# p50/p99 completion time, server CPU seconds per GiB served, peak RSS, and the ratios against
# dnsmasq. The raw UDP throughput of the same veth pair is measured first, as the ceiling.
#
# Run as root from anywhere:   bench/tftp-compare.sh
# Knobs (environment):
#   SERVERS="netbootd-tokio netbootd-uring dnsmasq tftpd-hpa"   which servers, in this order
#   CLIENTS_LIST="1 32 200 500"   simultaneous clients (one socket each)
#   WINDOWS="1 16 64"    windowsize asked for (RFC 7440). dnsmasq and tftpd-hpa grant none: they
#                        run every N at 1, and at N=1 also with the larger windows, to show it
#   BLKSIZE=1468         blksize asked for (1468 fills a 1500-byte MTU)
#   FILE_MIB=30          file each client fetches ...
#   TOTAL_MIB=3072       ... capped so N x file <= TOTAL_MIB (200 clients: 15.4 MiB each, 500: 6.1)
#   RUN_SECONDS=40       bound of each storm (clients still running then count as unfinished)
#   TIMEOUT_MS=1000 RETRIES=10   client retransmission timeout and retries
#   NETBOOTD_MAX_TRANSFERS       [tftp] max_transfers for netbootd (default: the daemon's, 256)
#   SERVER_CPUS, CLIENT_CPUS     taskset CPU lists for the servers and the generator (default:
#                        no pinning; SERVER_CPUS=0 CLIENT_CPUS=1 gives each side one core)
#   CURL_CLIENTS=32      also a load of that many curl processes (lock-step, --tftp-blksize
#                        BLKSIZE, the largest file) per server: real clients, as in the issue's
#                        reference figure (0 skips it)
#   RAW_SECONDS=5        length of the raw UDP ceiling measurement (0 skips it)
#   BUILD=1              cargo build --release first (0: use target/release binaries)
#   BUDGET=780           seconds after which no new storm starts (whole run < 15 min after build)
#   QUIET_WAIT=30        before each storm, wait up to this many seconds for the machine to be
#                        idle (under 15% of one CPU busy over 0.5 s: someone else's build would
#                        skew the figures); the busy share seen is in each row's note
#   OUT=/tmp/nbt-tftp-results    summary.txt, results.tsv, run.log, raw JSON
#   NETBOOTD, TFTP_STORM binaries (default: target/release/ of this workspace)
#   KEEP=1               keep the work directory (root, configs, server logs)
#
# Topology (two namespaces created here, ntb-srv-PID / ntb-cli-PID, removed on exit):
#
#   ntb-srv: srv0 10.76.0.1/16 ==veth== cli0 10.76.0.2/16 :ntb-cli
#            the server under test          tftp-storm (N sockets)
#
# Every storm starts on a fresh server process. Server CPU is read from a cpuacct (cgroup v1) or
# cgroup v2 group the server is moved into, so the children tftpd-hpa forks per transfer are
# counted (its parent ignores SIGCHLD, so /proc/PID/stat would miss them); without cgroups the
# script falls back to utime+stime+cutime+cstime of /proc/PID/stat and says so. Every command
# is bounded by `timeout`; only processes started here are stopped, by PID.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
SERVERS=${SERVERS:-"netbootd-tokio netbootd-uring dnsmasq tftpd-hpa"}
CLIENTS_LIST=${CLIENTS_LIST:-"1 32 200 500"}
WINDOWS=${WINDOWS:-"1 16 64"}
BLKSIZE=${BLKSIZE:-1468}
FILE_MIB=${FILE_MIB:-30}
TOTAL_MIB=${TOTAL_MIB:-3072}
RUN_SECONDS=${RUN_SECONDS:-40}
TIMEOUT_MS=${TIMEOUT_MS:-1000}
RETRIES=${RETRIES:-10}
NETBOOTD_MAX_TRANSFERS=${NETBOOTD_MAX_TRANSFERS:-}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
PIN_SRV=()
[ -n "$SERVER_CPUS" ] && PIN_SRV=(taskset -c "$SERVER_CPUS")
PIN_CLI=()
[ -n "$CLIENT_CPUS" ] && PIN_CLI=(taskset -c "$CLIENT_CPUS")
RAW_SECONDS=${RAW_SECONDS:-5}
CURL_CLIENTS=${CURL_CLIENTS:-32}
QUIET_WAIT=${QUIET_WAIT:-30}
BUILD=${BUILD:-1}
BUDGET=${BUDGET:-780}
OUT=${OUT:-/tmp/nbt-tftp-results}
NETBOOTD=${NETBOOTD:-$ROOT/target/release/netbootd}
TFTP_STORM=${TFTP_STORM:-$ROOT/target/release/tftp-storm}

NS_SRV=ntb-srv-$$
NS_CLI=ntb-cli-$$
SRV_IP=10.76.0.1
CLI_IP=10.76.0.2
METRICS=127.0.0.1:9464
WORK=$(mktemp -d /var/tmp/ntb.XXXXXX)
TFTP_ROOT=$WORK/root
SERVER_PID=""
CG=""
CG_KIND=""
RESULTS=$OUT/results.tsv

log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/run.log" >&2; }
die() { log "FATAL: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! awk '{ exit ($3 == "Z") ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null; }

# ---------------------------------------------------------------- CPU accounting
# A cgroup for the server and everything it forks: cgroup v1 cpuacct, else cgroup v2.
cg_setup() {
    if [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ] && mkdir "/sys/fs/cgroup/cpuacct/ntb-$$" 2>/dev/null; then
        CG=/sys/fs/cgroup/cpuacct/ntb-$$ CG_KIND=v1
    elif [ -f /sys/fs/cgroup/cgroup.controllers ] && mkdir "/sys/fs/cgroup/ntb-$$" 2>/dev/null; then
        CG=/sys/fs/cgroup/ntb-$$ CG_KIND=v2
    else
        CG="" CG_KIND=proc
    fi
}
# Processes left in our cgroup (children of a server we started), by PID.
cg_pids() { [ -n "$CG" ] && cat "$CG/cgroup.procs" 2>/dev/null; }
# CPU seconds of the server (and its children) so far.
server_cpu() {
    case $CG_KIND in
    v1) awk '{ printf "%.3f", $1 / 1e9 }' "$CG/cpuacct.usage" ;;
    v2) awk '/^usage_usec/ { printf "%.3f", $2 / 1e6 }' "$CG/cpu.stat" ;;
    *) awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13 + $14 + $15) / hz }' \
        "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0 ;;
    esac
}
server_rss() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

# Stop the server (SIGTERM, 5 s, SIGKILL) and whatever it forked that is still in our cgroup.
stop_server() {
    local pid=$SERVER_PID
    SERVER_PID=""
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    local p
    for p in $(cg_pids); do kill -KILL "$p" 2>/dev/null; done
    return 0
}

cleanup() {
    stop_server
    ip netns del "$NS_SRV" 2>/dev/null
    ip netns del "$NS_CLI" 2>/dev/null
    if [ -n "$CG" ]; then
        for _ in $(seq 20); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
    fi
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT" && rm -f "$OUT"/{run.log,storm.jsonl,storm.log,raw.log,summary.txt,netbootd-*.log}
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, port 69)"
for tool in ip jq curl ss awk sort; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install iproute2 jq curl"
done
for server in $SERVERS; do
    case $server in
    netbootd-tokio | netbootd-uring) ;;
    dnsmasq) command -v dnsmasq >/dev/null || die "dnsmasq missing: apt-get install dnsmasq-base" ;;
    tftpd-hpa) command -v in.tftpd >/dev/null || die "in.tftpd missing: apt-get install tftpd-hpa (then keep its service stopped: this script starts in.tftpd itself)" ;;
    *) die "unknown server $server: use netbootd-tokio, netbootd-uring, dnsmasq or tftpd-hpa" ;;
    esac
done

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    log "building netbootd and tftp-storm (release)"
    (cd "$ROOT" && timeout 1200 cargo build --release -p ims-netboot -p ims-bench) >"$OUT/build.log" 2>&1 ||
        { tail -20 "$OUT/build.log"; die "cargo build failed (log: $OUT/build.log)"; }
fi
[ -x "$TFTP_STORM" ] || die "$TFTP_STORM missing: build with cargo build --release -p ims-bench"
START=$SECONDS
# 500 transfers hold a socket and a file each; the generator holds one socket per client.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null
cg_setup
log "server CPU accounting: $CG_KIND${CG:+ ($CG)}"

# ---------------------------------------------------------------- topology
{ ip netns add "$NS_SRV" && ip netns add "$NS_CLI"; } || die "cannot create namespaces"
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up
ip -n "$NS_SRV" link add srv0 type veth peer name cli0 netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$SRV_IP/16" dev srv0
ip -n "$NS_CLI" addr add "$CLI_IP/16" dev cli0
ip -n "$NS_SRV" link set srv0 up
ip -n "$NS_CLI" link set cli0 up
for _ in $(seq 50); do
    nsx "$NS_CLI" cat /sys/class/net/cli0/operstate | grep -q up && break; sleep 0.1
done

# ---------------------------------------------------------------- files
# size_kib N: the per-client file for N clients, min(FILE_MIB, TOTAL_MIB / N), in KiB.
size_kib() { awk -v n="$1" -v f="$FILE_MIB" -v t="$TOTAL_MIB" 'BEGIN { k = int(t * 1024 / n); if (k > f * 1024) k = f * 1024; print k }'; }
mkdir -p "$TFTP_ROOT"
for n in $CLIENTS_LIST; do
    k=$(size_kib "$n")
    [ -f "$TFTP_ROOT/f-${k}k.bin" ] || head -c $((k * 1024)) /dev/urandom >"$TFTP_ROOT/f-${k}k.bin"
done
cat "$TFTP_ROOT"/*.bin >/dev/null # into the page cache: no server reads the disk

# busy_pct: CPU busy over the next 0.5 s, in % of one CPU (all CPUs summed), from /proc/stat.
busy_pct() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; printf "%.0f", (t > 0 ? (y[1] - x[1]) / t * 100 * n : 0) }'
}
# quiet: wait (at most QUIET_WAIT s) until the machine is idle; sets BUSY to the last reading.
quiet() {
    local deadline=$((SECONDS + QUIET_WAIT))
    BUSY=$(busy_pct)
    while [ "$BUSY" -gt 15 ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 1.5
        BUSY=$(busy_pct)
    done
    [ "$BUSY" -gt 15 ] && log "  machine still busy (${BUSY}% of a CPU) after ${QUIET_WAIT}s: measuring anyway"
}

# ---------------------------------------------------------------- servers
netbootd_config() {
    cat <<EOF
data_dir = "$WORK/netbootd-data"
metrics_listen = "$METRICS"

[tftp]
root = "$TFTP_ROOT"
listen = "$SRV_IP:69"
max_windowsize = 64
driver = "$1"
rate_limit_per_ip = 0
${NETBOOTD_MAX_TRANSFERS:+max_transfers = $NETBOOTD_MAX_TRANSFERS}
EOF
}
netbootd_config tokio >"$WORK/netbootd-tokio.toml"
netbootd_config uring >"$WORK/netbootd-uring.toml"
printf 'port=0\nenable-tftp\ntftp-root=%s\ntftp-max=1000\nlisten-address=%s\nbind-interfaces\nno-hosts\nno-resolv\nuser=root\npid-file=%s\nlog-facility=%s\nquiet-tftp\n' \
    "$TFTP_ROOT" "$SRV_IP" "$WORK/dnsmasq.pid" "$WORK/dnsmasq.log" >"$WORK/dnsmasq.conf"

port69_open() { nsx "$NS_SRV" ss -Hlun 'sport = :69' | grep -q .; }

# start_server NAME: fresh process in ntb-srv, moved into the CPU cgroup, ready on port 69.
start_server() {
    local name=$1 log=$WORK/$1.log
    case $name in
    netbootd-*)
        rm -rf "$WORK/netbootd-data"
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" env NETBOOTD_TFTP_DRIVER="${name#netbootd-}" \
            "$NETBOOTD" --config "$WORK/$name.toml" >"$log" 2>&1 &
        ;;
    dnsmasq)
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" >"$log" 2>&1 &
        ;;
    tftpd-hpa)
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" in.tftpd -L -u root -s "$TFTP_ROOT" -a "$SRV_IP:69" -B "$BLKSIZE" >"$log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    disown "$SERVER_PID"
    [ -n "$CG" ] && echo "$SERVER_PID" >"$CG/cgroup.procs"
    for _ in $(seq 250); do
        alive "$SERVER_PID" || break
        if port69_open; then
            case $name in
            netbootd-*) nsx "$NS_SRV" curl -sf -m 1 "http://$METRICS/readyz" >/dev/null 2>&1 && return 0 ;;
            *) return 0 ;;
            esac
        fi
        sleep 0.02
    done
    log "$name did not start: $(tail -n 3 "$log" | tr '\n' ' ')"
    cp "$log" "$OUT/" 2>/dev/null
    stop_server
    return 1
}

# netbootd's view after a storm: driver, completed, failed, refused, retransmits.
netbootd_metrics() {
    nsx "$NS_SRV" curl -sf -m 2 "http://$METRICS/metrics" 2>/dev/null | awk '
        /^netbootd_tftp_driver\{/ && $NF == 1 { match($0, /driver="[a-z]+"/); d = substr($0, RSTART + 8, RLENGTH - 9) }
        /^netbootd_tftp_transfers_completed_total/ { c += $NF }
        /^netbootd_tftp_transfers_failed_total/ { f += $NF }
        /^netbootd_tftp_requests_refused_total/ { r += $NF }
        /^netbootd_tftp_retransmits_total/ { x += $NF }
        END { printf "driver %s, completed %d, failed %d, refused %d, retransmits %d", d, c, f, r, x }'
}

# record SERVER N WIN_ASKED WIN_GRANTED FILE_MIB MB/s p50_s p99_s ok failed cpu_s cpu_s_per_GiB rss gen_cpu% loadavg note
record() { local IFS=$'\t'; echo "$*" >>"$RESULTS"; }

# ---------------------------------------------------------------- raw UDP ceiling and floor
# raw_pair BATCH: tftp-storm blasts 1472-byte datagrams from the server's namespace at a counter in
# the client's, BATCH per system call. Sets PAIR_MBS (received MB/s) and PAIR_CPU (the sender's
# CPU seconds per GiB received: on a veth pair that includes delivering into the receiver's socket).
raw_pair() {
    local batch=$1
    PAIR_MBS="" PAIR_CPU=""
    timeout $((RAW_SECONDS + 20)) "${PIN_CLI[@]}" ip netns exec "$NS_CLI" "$TFTP_STORM" --raw-recv "$CLI_IP:9999" \
        --max-seconds $((RAW_SECONDS + 15)) --json >"$WORK/raw-recv-$batch.json" 2>>"$OUT/raw.log" &
    local rpid=$!
    sleep 0.3
    timeout $((RAW_SECONDS + 10)) "${PIN_SRV[@]}" ip netns exec "$NS_SRV" "$TFTP_STORM" --raw-send "$CLI_IP:9999" \
        --raw-seconds "$RAW_SECONDS" --raw-batch "$batch" --json >"$WORK/raw-send-$batch.json" 2>>"$OUT/raw.log"
    wait "$rpid"
    PAIR_MBS=$(jq -r '.mb_per_s | floor' "$WORK/raw-recv-$batch.json" 2>/dev/null)
    PAIR_CPU=$(jq -rs 'if .[1].bytes > 0 then .[0].cpu_s / (.[1].bytes / 1073741824) * 100 | round / 100 else empty end' \
        "$WORK/raw-send-$batch.json" "$WORK/raw-recv-$batch.json" 2>/dev/null)
}

raw_ceiling() {
    [ "$RAW_SECONDS" != 0 ] || return
    quiet
    log "raw UDP ceiling (busy before ${BUSY}%): tftp-storm --raw-send for ${RAW_SECONDS}s, 1472-byte datagrams"
    raw_pair 1
    RAW_MBS=$PAIR_MBS RAW_CPU=$PAIR_CPU
    log "  tftp-storm raw UDP, one send per datagram: received ${RAW_MBS:-?} MB/s; sender ${RAW_CPU:-?} CPU-s/GiB"
    # The floor: what sending one datagram per block costs on this path with system calls
    # amortised 64 to 1 (a lock-step server must send one datagram per block and client).
    quiet
    raw_pair 64
    FLOOR_CPU=$PAIR_CPU
    log "  tftp-storm raw UDP, sendmmsg 64 per call: received ${PAIR_MBS:-?} MB/s; sender ${FLOOR_CPU:-?} CPU-s/GiB (the send-only floor)"
    if command -v iperf3 >/dev/null; then
        timeout $((RAW_SECONDS + 20)) ip netns exec "$NS_CLI" iperf3 -s -1 -B "$CLI_IP" >/dev/null 2>&1 &
        local ipid=$!
        sleep 0.5
        IPERF_MBS=$(timeout $((RAW_SECONDS + 15)) "${PIN_SRV[@]}" ip netns exec "$NS_SRV" iperf3 -c "$CLI_IP" -u -b 0 -l 1472 \
            -t "$RAW_SECONDS" --json 2>>"$OUT/raw.log" | jq -r '(.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 8e6 | floor' 2>/dev/null)
        wait "$ipid" 2>/dev/null
        log "  iperf3 -u -b 0 -l 1472: received ${IPERF_MBS:-?} MB/s (iperf3 copies every datagram)"
    fi
}

# ---------------------------------------------------------------- one storm
# storm SERVER N WIN: a fresh server, N clients fetching the N-sized file asking windowsize WIN.
storm() {
    local server=$1 n=$2 win=$3 k size json cpu0 cpu1 rss note="" extra=()
    k=$(size_kib "$n")
    size=$((k * 1024))
    quiet
    log "$server: $n clients x $(awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }') MiB, windowsize $win (busy before ${BUSY}%)"
    start_server "$server" || { record "$server" "$n" "$win" - - 0 - - "0/$n" - - - - - "$(loadavg)" "server failed to start"; return; }
    [ "$n" = 1 ] && extra=(--verify "$TFTP_ROOT/f-${k}k.bin")
    cpu0=$(server_cpu)
    json=$(timeout $((RUN_SECONDS + 15)) "${PIN_CLI[@]}" ip netns exec "$NS_CLI" "$TFTP_STORM" --server "$SRV_IP" \
        --bind "$CLI_IP" --clients "$n" --file "f-${k}k.bin" --blksize "$BLKSIZE" --windowsize "$win" \
        --timeout-ms "$TIMEOUT_MS" --retries "$RETRIES" --max-seconds "$RUN_SECONDS" --expect-size "$size" \
        "${extra[@]}" --json 2>>"$OUT/storm.log")
    cpu1=$(server_cpu)
    rss=$(server_rss)
    case $server in
    netbootd-*) note="$(netbootd_metrics)" ;;
    tftpd-hpa) note="RSS: parent only (it forks per transfer)" ;;
    esac
    note="busy before ${BUSY}%${note:+; $note}"
    [ "$n" = 1 ] && note="${note:+$note; }$(jq -r 'if .verify_mismatches == 0 then "verified byte-exact" else "VERIFY FAILED: \(.verify_mismatches) blocks differ" end' <<<"$json" 2>/dev/null)"
    stop_server
    echo "$server $n $win $json" >>"$OUT/storm.jsonl"
    if [ -z "$json" ]; then
        record "$server" "$n" "$win" - - 0 - - "0/$n" - - - "$rss" - "$(loadavg)" "tftp-storm failed: see $OUT/storm.log"
        return
    fi
    jq -r --arg s "$server" --arg n "$n" --arg w "$win" --arg c0 "$cpu0" --arg c1 "$cpu1" --arg rss "$rss" \
        --arg la "$(loadavg)" --arg note "$note" --arg mib "$(awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }')" '
        (($c1 | tonumber) - ($c0 | tonumber)) as $cpu |
        [$s, $n, $w, .window_max, $mib, (.aggregate_mb_per_s * 10 | round / 10),
         (.completion.p50_ms / 10 | round / 100), (.completion.p99_ms / 10 | round / 100),
         "\(.completed)/\(.clients)", (.failed + .unfinished), ($cpu * 100 | round / 100),
         (if .bytes > 0 then $cpu / (.bytes / 1073741824) * 100 | round / 100 else "-" end),
         $rss, (if .elapsed_s > 0 then .generator_cpu_s / .elapsed_s * 100 | round else 0 end), $la,
         ("\(.bytes / 1e6 | floor) MB in \(.elapsed_s * 100 | round / 100) s, \(.reacks) re-ACKs, \(.rrq_resends) RRQ resends" +
          (if .failed > 0 then ", failed: timeout \(.failed_timeout) error \(.failed_server_error) size \(.failed_size) protocol \(.failed_protocol)" else "" end) +
          (if .unfinished > 0 then ", \(.unfinished) unfinished at \($ENV.RUN_SECONDS // "?") s" else "" end) +
          (if $note != "" then "; " + $note else "" end))]
        | @tsv' <<<"$json" >>"$RESULTS"
}

# curl_storm SERVER: CURL_CLIENTS curl processes at once fetch the largest file (window "curl").
curl_storm() {
    local server=$1 n=$CURL_CLIENTS k size cpu0 cpu1 rss t0 t1 i note="" pids=() times=$WORK/curl-times
    k=$(size_kib 1)
    size=$((k * 1024))
    quiet
    log "$server: $n curl processes x $((k / 1024)) MiB, blksize $BLKSIZE (busy before ${BUSY}%)"
    start_server "$server" || { record "$server" "$n" curl - - 0 - - "0/$n" - - - - - "$(loadavg)" "server failed to start"; return; }
    : >"$times"
    cpu0=$(server_cpu)
    t0=$(date +%s%N)
    for i in $(seq "$n"); do
        timeout $((RUN_SECONDS + 15)) "${PIN_CLI[@]}" ip netns exec "$NS_CLI" curl -sS --max-time "$RUN_SECONDS" \
            --tftp-blksize "$BLKSIZE" -o /dev/null -w '%{time_total} %{size_download}\n' \
            "tftp://$SRV_IP/f-${k}k.bin" >>"$times" 2>>"$OUT/storm.log" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    t1=$(date +%s%N)
    cpu1=$(server_cpu)
    rss=$(server_rss)
    note="; busy before ${BUSY}%"
    case $server in netbootd-*) note="$note; $(netbootd_metrics)" ;; esac
    stop_server
    sort -n "$times" | awk -v s="$server" -v n="$n" -v size="$size" -v wall="$(((t1 - t0) / 1000000))" \
        -v c0="$cpu0" -v c1="$cpu1" -v rss="$rss" -v la="$(loadavg)" -v note="$note" -v mib="$((k / 1024))" '
        { t[++m] = $1; if ($2 == size) ok++; bytes += $2 }
        END {
            secs = wall / 1000; cpu = c1 - c0
            p50 = m ? t[int((m + 1) / 2)] : 0; p99 = m ? t[int(m * 0.99 + 0.999)] : 0
            printf "%s\t%d\tcurl\t1\t%s\t%.1f\t%.2f\t%.2f\t%d/%d\t%d\t%.2f\t%s\t%s\t-\t%s\t%d MB in %.2f s, %d curl processes%s\n",
                s, n, mib, bytes / secs / 1e6, p50, p99, ok, n, n - ok, cpu,
                (bytes > 0 ? sprintf("%.2f", cpu / (bytes / 1073741824)) : "-"), rss, la, bytes / 1e6, secs, n, note
        }' >>"$RESULTS"
}

windowed() { [[ $1 == netbootd-* ]]; }

# ---------------------------------------------------------------- run
export RUN_SECONDS
printf 'server\tN\twin\tgranted\tfile_MiB\tMB/s\tp50_s\tp99_s\tok\tfailed\tsrv_cpu_s\tcpu_s/GiB\tRSS_MiB\tgen_cpu%%\tloadavg\tnote\n' >"$RESULTS"
log "run: SERVERS='$SERVERS' CLIENTS_LIST='$CLIENTS_LIST' WINDOWS='$WINDOWS' BLKSIZE=$BLKSIZE FILE_MIB=$FILE_MIB TOTAL_MIB=$TOTAL_MIB RUN_SECONDS=$RUN_SECONDS SERVER_CPUS='$SERVER_CPUS' CLIENT_CPUS='$CLIENT_CPUS' ($(nproc) CPUs, kernel $(uname -r), io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo n/a), loadavg $(loadavg))"
RAW_MBS="" RAW_CPU="" FLOOR_CPU="" IPERF_MBS="" BUSY=0
raw_ceiling
for n in $CLIENTS_LIST; do
    for win in $WINDOWS; do
        for server in $SERVERS; do
            # Servers without windowsize run every N at window 1, and N=1 at every window.
            windowed "$server" || [ "$win" = 1 ] || [ "$n" = 1 ] || continue
            if [ $((SECONDS - START)) -ge "$BUDGET" ]; then
                record "$server" "$n" "$win" - - 0 - - - - - - - - "$(loadavg)" "skipped: time budget"
                continue
            fi
            storm "$server" "$n" "$win"
        done
    done
done

if [ "$CURL_CLIENTS" != 0 ]; then
    for server in $SERVERS; do
        if [ $((SECONDS - START)) -ge "$BUDGET" ]; then
            record "$server" "$CURL_CLIENTS" curl - - 0 - - - - - - - - "$(loadavg)" "skipped: time budget"
            continue
        fi
        curl_storm "$server"
    done
fi

# ---------------------------------------------------------------- report
{
    echo "# TFTP storm, blksize $BLKSIZE, $(nproc) CPUs, $(date -u +%FT%TZ), pinning: servers ${SERVER_CPUS:-none}, generator ${CLIENT_CPUS:-none}; server CPU via $CG_KIND"
    echo "# raw UDP ceiling of the veth pair (1472-byte datagrams): tftp-storm ${RAW_MBS:-n/a} MB/s, iperf3 ${IPERF_MBS:-n/a} MB/s"
    echo "# send-only floor: a sender that only sends costs ${RAW_CPU:-n/a} CPU-s/GiB (one send per datagram), ${FLOOR_CPU:-n/a} (sendmmsg, 64 per call)"
    echo
    column -t -s $'\t' "$RESULTS"
    echo
    echo "# against dnsmasq at the same N (dnsmasq grants no windowsize: its window-1 run; curl rows: its curl run):"
    echo "#   MB/s ratio (higher is better), CPU-s/GiB ratio (lower is better)"
    awk -F'\t' 'NR > 1 && $6 > 0 {
            key = $1 "|" $2 "|" $3; mbs[key] = $6; cpu[key] = $12; order[++k] = key
        }
        END {
            for (i = 1; i <= k; i++) {
                split(order[i], p, "|")
                if (p[1] == "dnsmasq") continue
                ref = "dnsmasq|" p[2] "|" (p[3] == "curl" ? "curl" : "1")
                if (!(ref in mbs)) continue
                r1 = mbs[order[i]] / mbs[ref]
                r2 = (cpu[ref] + 0 > 0 && cpu[order[i]] != "-") ? sprintf("%.2f", cpu[order[i]] / cpu[ref]) : "n/a"
                printf "  %-15s N=%-4s win %-3s  %7.2fx MB/s   %6s x CPU/GiB\n", p[1], p[2], p[3], r1, r2
            }
            # A third of the lock-step CPU per GiB of dnsmasq (the goal) against the send-only floor.
            if (floor + 0 > 0) {
                printf "# a third of dnsmasq'"'"'s CPU-s/GiB against the send-only floor (%s CPU-s/GiB, sendmmsg):\n", floor
                for (i = 1; i <= k; i++) {
                    split(order[i], p, "|")
                    if (p[1] != "dnsmasq" || cpu[order[i]] + 0 <= 0) continue
                    printf "  N=%-4s win %-4s  a third: %5.2f   floor / dnsmasq: %4.2fx\n", p[2], p[3], cpu[order[i]] / 3, floor / cpu[order[i]]
                }
            }
        }' floor="${FLOOR_CPU:-}" "$RESULTS"
} | tee "$OUT/summary.txt"
log "total $((SECONDS - START)) s; results in $OUT"
