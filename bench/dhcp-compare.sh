#!/usr/bin/env bash
# dhcp-compare.sh: DHCPv4 DORA throughput and latency of netbootd, ISC Kea and dnsmasq, measured
# the same way in the same run on the same veth topology, with the ratios printed at the end.
#
# Run as root from anywhere:   bench/dhcp-compare.sh
# Knobs (environment):
#   CLIENTS=20000        distinct registered MACs per MAC set (relay set and direct set)
#   SERVERS="netbootd kea dnsmasq"     LOADS="perfdhcp relay direct relay@200"
#                        perfdhcp: rate ladder; relay/direct: dhcp-load closed loop, one DORA per
#                        MAC; relay@R/direct@R: dhcp-load open loop at R DORA/s
#   LADDER="250 500 1000 2000 3000 4000 6000 8000 12000 16000"  perfdhcp target rates (DORA/s)
#   PERIOD=5             seconds of perfdhcp per ladder step (-p)
#   LOAD_SECONDS=10      bound of each dhcp-load run (--max-seconds; open loop: + 3 s of tail)
#   CONCURRENCY=128      dhcp-load outstanding DORAs (closed loop)
#   KEA_THREADS=0        Kea thread-pool-size (0 = one per CPU)
#   SERVER_CPUS, CLIENT_CPUS  taskset CPU lists for the servers and the load tools (default: no
#                        pinning; SERVER_CPUS=0 CLIENT_CPUS=1 gives each side one core)
#   BUILD=1              cargo build --release first (0: use existing target/release binaries)
#   BUDGET=540           seconds: no new measurement starts after this (whole run < 10 min)
#   OUT=/tmp/nbb-results results directory (tables, raw logs, generated configs)
#   NETBOOTD, DHCP_LOAD  binaries (default: target/release/ of this workspace)
#   KEEP=1               keep the work directory (configs, server logs, lease files)
#
# Topology (two namespaces created here, named nbb-srv-PID / nbb-cli-PID, removed on exit):
#
#   nbb-srv: srv0 10.76.0.1/16 ==veth== cli0 10.76.0.2/16 + 10.78.0.2/16 :nbb-cli
#            route 10.78.0.0/16 via 10.76.0.2
#
#   relay:  perfdhcp / dhcp-load bind 10.78.0.2:67 in nbb-cli, send with giaddr 10.78.0.2 to
#           10.76.0.1:67; servers answer giaddr:67 through the route. Subnet 10.78.0.0/16.
#   direct: dhcp-load broadcasts raw frames from each client MAC out of cli0 (BROADCAST flag);
#           servers answer 255.255.255.255:68 on srv0. Subnet 10.76.0.0/16 (srv0's subnet).
#   srv0 has a single address on purpose: Kea opens one raw socket per interface address and
#   would then see (and answer) every broadcast twice.
#   Pools and reservations start at x.x.1.10, clear of the server and relay addresses.
#   Two MAC sets of CLIENTS each: 02:78:00:00:xx:xx (relay) and 02:76:00:00:xx:xx (direct).
#   netbootd registers one set per run ([[machine]] with a reserved IP in that set's subnet);
#   Kea (memfile, persist, multi-threaded) and dnsmasq hand out the same subnets from pools.
#
# Every server/load pair starts from a fresh server with an empty lease store. Every command is
# bounded by `timeout`; only processes started here are stopped, by PID.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CLIENTS=${CLIENTS:-20000}
SERVERS=${SERVERS:-"netbootd kea dnsmasq"}
LOADS=${LOADS:-"perfdhcp relay direct relay@200"}
LADDER=${LADDER:-"250 500 1000 2000 3000 4000 6000 8000 12000 16000"}
PERIOD=${PERIOD:-5}
LOAD_SECONDS=${LOAD_SECONDS:-10}
CONCURRENCY=${CONCURRENCY:-128}
KEA_THREADS=${KEA_THREADS:-0}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
# Command prefixes (arrays, so `"${PIN_SRV[@]}" cmd &` keeps $! == cmd's PID: taskset execs).
PIN_SRV=()
[ -n "$SERVER_CPUS" ] && PIN_SRV=(taskset -c "$SERVER_CPUS")
PIN_CLI=()
[ -n "$CLIENT_CPUS" ] && PIN_CLI=(taskset -c "$CLIENT_CPUS")
BUILD=${BUILD:-1}
BUDGET=${BUDGET:-540}
OUT=${OUT:-/tmp/nbb-results}

NS_SRV=nbb-srv-$$
NS_CLI=nbb-cli-$$
SRV_IP=10.76.0.1
CLI_IP=10.76.0.2
GIADDR=10.78.0.2
METRICS=127.0.0.1:9464
NETBOOTD=${NETBOOTD:-$ROOT/target/release/netbootd}
DHCP_LOAD=${DHCP_LOAD:-$ROOT/target/release/dhcp-load}
WORK=$(mktemp -d /var/tmp/nbb.XXXXXX) # on disk, not tmpfs: fsync must mean something
SERVER_PID=""
RESULTS=$OUT/results.tsv

log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/run.log" >&2; }
die() { log "FATAL: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! awk '{ exit ($3 == "Z") ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null; }

# Stop the server we started (by PID): SIGTERM, up to 5 s, then SIGKILL. `stop_server KILL`
# sends SIGKILL at once (used to prove netbootd's leases were on disk before the ACKs).
stop_server() {
    local pid=$SERVER_PID sig=${1:-TERM}
    SERVER_PID=""
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    # Servers are disowned when started (no "Killed" job notices); bash still reaps them.
    return 0
}

cleanup() {
    stop_server
    ip netns del "$NS_SRV" 2>/dev/null
    ip netns del "$NS_CLI" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT" && rm -f "$OUT"/{run.log,dhcp-load.jsonl,dhcp-load.log,netbootd-*.log,netbootd-leases.err,perfdhcp-*.log}
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, raw sockets, port 67)"
for tool in perfdhcp kea-dhcp4 dnsmasq ip jq curl ss; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install kea-admin kea-dhcp4-server dnsmasq-base iproute2 jq curl"
done
for load in $LOADS; do
    [[ $load =~ ^(perfdhcp|relay|direct|(relay|direct)@[1-9][0-9]*)$ ]] ||
        die "unknown load $load: use perfdhcp, relay, direct, relay@RATE or direct@RATE"
done
for server in $SERVERS; do
    [[ $server =~ ^(netbootd|kea|dnsmasq)$ ]] || die "unknown server $server: use netbootd, kea or dnsmasq"
done

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    log "building netbootd and dhcp-load (release)"
    (cd "$ROOT" && timeout 1200 cargo build --release -p ims-netboot -p ims-bench) >"$OUT/build.log" 2>&1 ||
        { tail -20 "$OUT/build.log"; die "cargo build failed (log: $OUT/build.log)"; }
fi
[ -x "$DHCP_LOAD" ] || die "$DHCP_LOAD missing: build with cargo build --release -p ims-bench"
START=$SECONDS

# ---------------------------------------------------------------- topology
{ ip netns add "$NS_SRV" && ip netns add "$NS_CLI"; } || die "cannot create namespaces"
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up
ip -n "$NS_SRV" link add srv0 type veth peer name cli0 netns "$NS_CLI"
ip -n "$NS_SRV" link set srv0 address 02:77:00:00:00:01
ip -n "$NS_CLI" link set cli0 address 02:77:00:00:00:02
ip -n "$NS_SRV" addr add "$SRV_IP/16" dev srv0
ip -n "$NS_CLI" addr add "$CLI_IP/16" dev cli0
ip -n "$NS_CLI" addr add "$GIADDR/16" dev cli0
ip -n "$NS_SRV" link set srv0 up
ip -n "$NS_CLI" link set cli0 up
ip -n "$NS_SRV" route add 10.78.0.0/16 via "$CLI_IP" dev srv0
for _ in $(seq 50); do
    nsx "$NS_CLI" cat /sys/class/net/cli0/operstate | grep -q up && break; sleep 0.1
done

# ---------------------------------------------------------------- MACs and configs
# mac_list PREFIX: CLIENTS MACs PREFIX:00:00:hi:lo.  reserved NET: the matching 10.NET.x.y,
# x = 1 + i/200, y = 10 + i%200 (never .0/.255, never a server or relay address).
mac_list() { awk -v n="$CLIENTS" -v p="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%s:00:00:%02x:%02x\n", p, int(i / 256), i % 256 }'; }
mac_list 02:78 >"$WORK/macs-relay.txt"
mac_list 02:76 >"$WORK/macs-direct.txt"

# netbootd_config SET NET: both subnets, srv0 served directly, CLIENTS machines of SET.
netbootd_config() {
    local set=$1 net=$2
    cat <<EOF
data_dir = "$WORK/netbootd-data"
metrics_listen = "$METRICS"
log_format = "text"

[dhcp]
max_batch = 1024

[[interface]]
name = "srv0"
address = "$SRV_IP"

[[subnet]]
cidr = "10.76.0.0/16"
router = "$SRV_IP"
lease_time = "1h"

[[subnet]]
cidr = "10.78.0.0/16"
router = "$GIADDR"
lease_time = "1h"

[[boot_profile]]
name = "default"
bios = "undionly.kpxe"
uefi_x64 = "ipxe.efi"

EOF
    awk -v net="$net" '{ printf "[[machine]]\nmac = \"%s\"\nip = \"10.%d.%d.%d\"\nhostname = \"node-%05d\"\n\n", $1, net, 1 + int((NR - 1) / 200), 10 + (NR - 1) % 200, NR - 1 }' "$WORK/macs-$set.txt"
}
netbootd_config relay 78 >"$WORK/netbootd-relay.toml"
netbootd_config direct 76 >"$WORK/netbootd-direct.toml"

cat >"$WORK/kea.json" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "srv0" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$WORK/kea/leases4.csv", "lfc-interval": 0 },
    "multi-threading": { "enable-multi-threading": true, "thread-pool-size": $KEA_THREADS, "packet-queue-size": 64 },
    "valid-lifetime": 3600,
    "subnet4": [
        { "id": 76, "subnet": "10.76.0.0/16", "interface": "srv0",
          "pools": [ { "pool": "10.76.1.10 - 10.76.255.250" } ],
          "option-data": [ { "name": "routers", "data": "$SRV_IP" } ] },
        { "id": 78, "subnet": "10.78.0.0/16",
          "pools": [ { "pool": "10.78.1.10 - 10.78.255.250" } ],
          "option-data": [ { "name": "routers", "data": "$GIADDR" } ] }
    ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$WORK/kea/kea.log" } ] } ]
} }
EOF

cat >"$WORK/dnsmasq.conf" <<EOF
port=0
interface=srv0
except-interface=lo
bind-interfaces
no-hosts
no-resolv
user=root
pid-file=$WORK/dnsmasq/pid
log-facility=$WORK/dnsmasq/dnsmasq.log
dhcp-leasefile=$WORK/dnsmasq/leases
dhcp-authoritative
dhcp-lease-max=100000
quiet-dhcp
no-ping
dhcp-range=set:direct,10.76.1.10,10.76.255.250,255.255.0.0,1h
dhcp-range=set:relay,10.78.1.10,10.78.255.250,255.255.0.0,1h
dhcp-option=tag:direct,option:router,$SRV_IP
dhcp-option=tag:relay,option:router,$GIADDR
EOF

# ---------------------------------------------------------------- servers
# Wait (up to 6 s) until something listens on UDP port 67 in nbb-srv and the server still runs.
wait_port67() {
    for _ in $(seq 300); do
        nsx "$NS_SRV" ss -Hlun 'sport = :67' | grep -q . && { alive "$SERVER_PID"; return; }
        alive "$SERVER_PID" || return 1
        sleep 0.02
    done
    return 1
}

netbootd_ready() {
    nsx "$NS_SRV" curl -sf -m 1 "http://$METRICS/readyz" >/dev/null 2>&1
}

# start_server NAME SET: fresh state, start in nbb-srv, wait until it answers; sets SERVER_PID
# and STARTUP_MS. On failure the server is stopped again.
start_server() {
    start_server_ "$@" && return 0
    log "$1 did not start"
    stop_server
    return 1
}
start_server_() {
    local name=$1 set=$2 t0
    t0=$(date +%s%N)
    case $name in
    netbootd)
        rm -rf "$WORK/netbootd-data"
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" "$NETBOOTD" --config "$WORK/netbootd-$set.toml" >"$WORK/netbootd.log" 2>&1 &
        SERVER_PID=$!
        disown "$SERVER_PID"
        # Ready = /readyz answers 200: every enabled service has its sockets open.
        for _ in $(seq 500); do
            netbootd_ready && break
            alive "$SERVER_PID" || break
            sleep 0.02
        done
        netbootd_ready || { tail -n 5 "$WORK/netbootd.log" >&2; return 1; }
        grep -m1 "netbootd started" "$WORK/netbootd.log" >"$OUT/netbootd-startup-$set.log"
        ;;
    kea)
        rm -rf "$WORK/kea" && mkdir -p "$WORK/kea"
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" env KEA_PIDFILE_DIR="$WORK/kea" KEA_LOCKFILE_DIR="$WORK/kea" \
            kea-dhcp4 -c "$WORK/kea.json" >"$WORK/kea/stdout.log" 2>&1 &
        SERVER_PID=$!
        disown "$SERVER_PID"
        wait_port67 || { tail -n 5 "$WORK/kea/kea.log" "$WORK/kea/stdout.log" >&2; return 1; }
        ;;
    dnsmasq)
        rm -rf "$WORK/dnsmasq" && mkdir -p "$WORK/dnsmasq" && : >"$WORK/dnsmasq/leases"
        "${PIN_SRV[@]}" ip netns exec "$NS_SRV" dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" \
            >"$WORK/dnsmasq/stdout.log" 2>&1 &
        SERVER_PID=$!
        disown "$SERVER_PID"
        wait_port67 || { tail -n 5 "$WORK/dnsmasq/stdout.log" >&2; return 1; }
        ;;
    esac
    alive "$SERVER_PID" || return 1
    STARTUP_MS=$((($(date +%s%N) - t0) / 1000000))
}

# CPU seconds (utime + stime, all threads) and peak RSS (MiB) of the running server.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }
server_rss() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

# Leases a reference server holds on disk after it stopped: distinct MACs in Kea's memfile CSV,
# lines of dnsmasq's lease file.
stored_leases() {
    case $1 in
    kea) awk -F, 'NR > 1 { print $2 }' "$WORK/kea/leases4.csv" 2>/dev/null | sort -u | wc -l ;;
    dnsmasq) wc -l <"$WORK/dnsmasq/leases" 2>/dev/null ;;
    esac
}

# record SERVER LOAD DORA/s avg_ms p50_ms p99_ms failed cpu_s cpu_pct rss_mb loadavg note
record() { local IFS=$'\t'; echo "$*" >>"$RESULTS"; }

# ---------------------------------------------------------------- loads
# children_cpu VAR: set VAR to the CPU seconds (user + system) of this shell's waited-for
# descendants so far. `times` must run in this very shell (a $(...) fork starts from zero).
children_cpu() {
    times >"$WORK/times"
    printf -v "$1" '%s' "$(awk 'NR == 2 {
        n = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] }
        printf "%.2f", n
    }' "$WORK/times")"
}

# perfdhcp_step SERVER RATE: one ladder step on a fresh server. Prints
# "achieved do_drop% ra_drop% avg_ms srv_cpu_s srv_cpu_% srv_rss_MiB perfdhcp_cpu_%", the CPU
# shares over the perfdhcp run's wall time (PERIOD plus its start-up and exit wait).
perfdhcp_step() {
    local server=$1 rate=$2 cpu0 cpu1 out=$WORK/perfdhcp-$1-$2.log
    start_server "$server" relay || { echo "- - - - - - - -"; return; }
    cpu0=$(server_cpu)
    local tool0 tool1 w0 w1
    children_cpu tool0
    w0=$(date +%s%N)
    timeout $((PERIOD + 15)) "${PIN_CLI[@]}" ip netns exec "$NS_CLI" perfdhcp -4 -l "$GIADDR" -r "$rate" -p "$PERIOD" \
        -M "$WORK/macs-relay.txt" -W 500000 "$SRV_IP" >"$out" 2>&1
    w1=$(date +%s%N)
    cpu1=$(server_cpu)
    children_cpu tool1
    local rss; rss=$(server_rss)
    stop_server
    cp "$out" "$OUT/"
    # Achieved rate = ACKs received / PERIOD. (perfdhcp's own "Rate:" also divides by the -W
    # exit wait and start-up, so it reads low on short periods.)
    awk -v c0="$cpu0" -v c1="$cpu1" -v p="$PERIOD" -v rss="$rss" -v t0="$tool0" -v t1="$tool1" \
        -v wall="$(((w1 - w0) / 1000000))" '
        /Statistics for: DISCOVER-OFFER/ { sec = "DO" }
        /^received packets:/ { recv[sec] = $3 }
        /Statistics for: REQUEST-ACK/ { sec = "RA" }
        /^drops ratio:/ { v = $3; sub(/%/, "", v); drop[sec] = v }
        /^avg delay:/ && !seen[sec]++ { v = $3; avg[sec] = v }
        END {
            rate = recv["RA"] / p
            printf "%.0f %s %s %.3f %.2f %.0f %s %.0f\n", rate, (drop["DO"] == "" ? 100 : drop["DO"]),
                (drop["RA"] == "" ? 100 : drop["RA"]), avg["DO"] + avg["RA"], c1 - c0,
                (c1 - c0) / (wall / 1000) * 100, rss, (t1 - t0) / (wall / 1000) * 100
        }' "$out"
}

# perfdhcp ladder: climb LADDER on fresh servers until a step drops >= 1% of exchanges or
# falls 10% short of its target; then one bisection step between the last pass and the fail.
run_perfdhcp() {
    local server=$1 best="" best_line="" fail="" r line ach dd rd avg cpu pct rss tool
    log "$server / perfdhcp ladder (loadavg $(loadavg))"
    for r in $LADDER; do
        line=$(perfdhcp_step "$server" "$r")
        read -r ach dd rd _ <<<"$line"
        log "  target $r: $line   (achieved DO-drop% RA-drop% avg_ms srv_cpu_s srv_cpu% srv_rss_MiB perfdhcp_cpu%)"
        if awk -v a="$ach" -v d="$dd" -v r2="$rd" -v t="$r" 'BEGIN { exit !(a >= 0.9 * t && d < 1 && r2 < 1) }'; then
            best=$r; best_line=$line
        else
            fail=$r; break
        fi
        [ $((SECONDS - START)) -lt "$BUDGET" ] || break
    done
    if [ -n "$best" ] && [ -n "$fail" ] && [ $((SECONDS - START)) -lt "$BUDGET" ]; then
        r=$(((best + fail) / 2))
        line=$(perfdhcp_step "$server" "$r")
        read -r ach dd rd _ <<<"$line"
        log "  target $r: $line"
        if awk -v a="$ach" -v d="$dd" -v r2="$rd" -v t="$r" 'BEGIN { exit !(a >= 0.9 * t && d < 1 && r2 < 1) }'; then
            best=$r; best_line=$line
        fi
    fi
    if [ -z "$best" ]; then
        record "$server" perfdhcp 0 - - - - - - - "$(loadavg)" "no ladder step passed (<1% drops)"
        return
    fi
    read -r ach dd rd avg cpu pct rss tool <<<"$best_line"
    record "$server" perfdhcp "$ach" "$avg" - - "drop ${dd}%/${rd}%" "$cpu" "$pct" "$rss" "$(loadavg)" \
        "max sustained: target $best/s passed${fail:+, $fail/s failed}; perfdhcp CPU ${tool}%"
}

# run_dhcp_load SERVER LOAD on a fresh server. LOAD is relay|direct: CLIENTS DORAs (one per MAC),
# closed loop with CONCURRENCY outstanding; or relay@R|direct@R: open loop at R DORA starts/s,
# min(CLIENTS, R * LOAD_SECONDS) DORAs (latency at a load every server sustains).
run_dhcp_load() {
    local server=$1 load=$2 mode=${2%@*} cpu0 cpu1 json rss args pace note=""
    log "$server / dhcp-load $load (loadavg $(loadavg))"
    start_server "$server" "$mode" || { record "$server" "$load" 0 - - - - - - - "$(loadavg)" "server failed to start"; return; }
    [ "$server" = netbootd ] && note="startup ${STARTUP_MS} ms with $CLIENTS machines"
    if [ "$mode" = relay ]; then args=(--relay "$GIADDR" --server "$SRV_IP"); else args=(--direct cli0); fi
    if [ "$load" = "$mode" ]; then
        pace=(--concurrency "$CONCURRENCY" --max-seconds "$LOAD_SECONDS")
    else
        local rate=${load#*@}
        pace=(--rate "$rate" --concurrency 100000 --max-seconds $((LOAD_SECONDS + 3))
            --count $((rate * LOAD_SECONDS < CLIENTS ? rate * LOAD_SECONDS : CLIENTS)))
    fi
    cpu0=$(server_cpu)
    json=$(timeout $((LOAD_SECONDS + 10)) "${PIN_CLI[@]}" ip netns exec "$NS_CLI" "$DHCP_LOAD" "${args[@]}" \
        --macs "$WORK/macs-$mode.txt" "${pace[@]}" --timeout-ms 1000 --tries 2 \
        --json 2>>"$OUT/dhcp-load.log")
    cpu1=$(server_cpu)
    rss=$(server_rss)
    echo "$server $load $json" >>"$OUT/dhcp-load.jsonl"
    if [ "$server" = netbootd ]; then
        # SIGKILL, then read the store: every ACKed MAC must have its lease on disk.
        stop_server KILL
        local leases acked
        leases=$(timeout 30 "$NETBOOTD" leases --config "$WORK/netbootd-$mode.toml" --json 2>>"$OUT/netbootd-leases.err" |
            jq '[.[] | select(.state == "bound")] | length' 2>/dev/null)
        acked=$(jq -r .acked_macs <<<"$json" 2>/dev/null)
        note="$note; after SIGKILL the store holds ${leases:-?} leases for ${acked:-?} ACKed MACs"
        if [ -n "$leases" ] && [ "$leases" = "$acked" ]; then
            note="$note (all durable)"
        else
            note="$note (MISMATCH)"
        fi
    else
        stop_server
        note="stored: $(stored_leases "$server") leases"
    fi
    if [ -z "$json" ]; then
        record "$server" "$load" 0 - - - - "$cpu1" - "$rss" "$(loadavg)" "dhcp-load failed: see $OUT/dhcp-load.log"
        return
    fi
    jq -r --arg s "$server" --arg m "$load" --arg c0 "$cpu0" --arg c1 "$cpu1" --arg rss "$rss" \
        --arg la "$(loadavg)" --arg note "$note" '
        (($c1 | tonumber) - ($c0 | tonumber)) as $cpu |
        [$s, $m, (.sustained_dora_per_s | floor), (.latency.mean_ms * 100 | round / 100),
         (.latency.p50_ms * 100 | round / 100), (.latency.p99_ms * 100 | round / 100),
         "\(.failed) (+\(.unfinished) cut)", ($cpu * 100 | round / 100),
         (if .elapsed_s > 0 then $cpu / .elapsed_s * 100 | round else 0 end), $rss, $la,
         ("\(.completed)/\(.started) in \(.elapsed_s * 100 | round / 100) s (\(.dora_per_s | floor)/s overall), gen CPU \(.generator_cpu_s / .elapsed_s * 100 | round)%" + (if $note != "" then "; " + $note else "" end))]
        | @tsv' <<<"$json" >>"$RESULTS"
}

# ---------------------------------------------------------------- run
printf 'server\tload\tDORA/s\tavg_ms\tp50_ms\tp99_ms\tfailed\tsrv_cpu_s\tsrv_cpu_%%\tsrv_rss_MiB\tloadavg\tnote\n' >"$RESULTS"
log "run: CLIENTS=$CLIENTS SERVERS='$SERVERS' LOADS='$LOADS' PERIOD=$PERIOD LOAD_SECONDS=$LOAD_SECONDS CONCURRENCY=$CONCURRENCY SERVER_CPUS='$SERVER_CPUS' CLIENT_CPUS='$CLIENT_CPUS' ($(nproc) CPUs, loadavg $(loadavg))"
for server in $SERVERS; do
    if [ "$server" = netbootd ] && [ ! -x "$NETBOOTD" ]; then
        record netbootd all 0 - - - - - - - "$(loadavg)" "not built"
        continue
    fi
    for load in $LOADS; do
        if [ $((SECONDS - START)) -ge "$BUDGET" ]; then
            record "$server" "$load" 0 - - - - - - - "$(loadavg)" "skipped: time budget"
            continue
        fi
        case $load in
        perfdhcp) run_perfdhcp "$server" ;;
        *) run_dhcp_load "$server" "$load" ;;
        esac
    done
done

# ---------------------------------------------------------------- report
{
    echo "# DHCPv4 DORA, $CLIENTS registered MACs per set, $(nproc) CPUs, $(date -u +%FT%TZ)," \
        "pinning: servers ${SERVER_CPUS:-none}, load tools ${CLIENT_CPUS:-none}"
    echo
    column -t -s $'\t' "$RESULTS"
    echo
    echo "# ratios of the highest DORA/s (open-loop loads, where every server keeps up, left out)"
    awk -F'\t' 'NR > 1 && $2 !~ /@/ { v[$1 "/" $2] = $3; loads[$2] = 1 }
        END {
            for (l in loads) {
                n = v["netbootd/" l]
                for (s = 0; s < 2; s++) {
                    ref = s ? "dnsmasq" : "kea"
                    r = v[ref "/" l]
                    if (n > 0 && r > 0) printf "  %-9s netbootd/%-8s %6.2fx\n", l, ref, n / r
                    else printf "  %-9s netbootd/%-8s  n/a\n", l, ref
                }
            }
        }' "$RESULTS" | sort
    if ls "$OUT"/netbootd-startup-*.log >/dev/null 2>&1; then
        echo
        echo "# netbootd's own startup lines ($CLIENTS [[machine]] entries)"
        cat "$OUT"/netbootd-startup-*.log
    fi
} | tee "$OUT/summary.txt"
log "total $((SECONDS - START)) s; results in $OUT"
