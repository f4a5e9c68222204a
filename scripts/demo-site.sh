#!/usr/bin/env bash
# demo-site.sh — run netbootd standalone on a throw-away network-namespace site.
#
#   sudo bash scripts/demo-site.sh            # build, start, show a client getting its lease
#
# Creates namespaces nbdemo-srv (netbootd on veth 10.77.0.1/24) and nbdemo-cli (a DHCP client),
# registers two machines, starts netbootd, runs busybox udhcpc as the registered machine and as an
# unknown one, prints the leases and metrics, then keeps netbootd running until Ctrl-C. Everything
# (namespaces, processes, temp files) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo-site.sh: needs root (network namespaces); run with sudo" >&2; exit 1; }
for c in ip udhcpc curl; do
    command -v "$c" >/dev/null || { echo "demo-site.sh: '$c' missing: apt-get install iproute2 udhcpc curl" >&2; exit 1; }
done

SRV=nbdemo-srv CLI=nbdemo-cli
WORK=$(mktemp -d /tmp/nbdemo.XXXXXX)
NB_PID=""
cleanup() {
    trap - EXIT INT TERM
    set +e
    [ -n "$NB_PID" ] && kill "$NB_PID" 2>/dev/null && wait "$NB_PID" 2>/dev/null
    ip netns del "$CLI" 2>/dev/null
    ip netns del "$SRV" 2>/dev/null
    rm -rf "/etc/netns/$CLI" "$WORK"
    echo "demo-site: cleaned up"
}
trap cleanup EXIT INT TERM

echo "== building netbootd (release)"
cargo build --release -q -p ims-netboot --bin netbootd
NB=target/release/netbootd

echo "== creating the site: $SRV (10.77.0.1) <-veth-> $CLI"
ip netns del "$CLI" 2>/dev/null || true
ip netns del "$SRV" 2>/dev/null || true
ip netns add "$SRV"
ip netns add "$CLI"
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip -n "$SRV" link add srv0 type veth peer name cli0 netns "$CLI"
ip -n "$SRV" addr add 10.77.0.1/24 dev srv0
ip -n "$SRV" link set srv0 up
ip -n "$CLI" link set cli0 address 52:54:00:00:00:01
ip -n "$CLI" link set cli0 up
mkdir -p "/etc/netns/$CLI" && : > "/etc/netns/$CLI/resolv.conf"

cat > "$WORK/netbootd.toml" <<TOML
data_dir = "$WORK/data"
metrics_listen = "10.77.0.1:9464"

[[interface]]
name = "srv0"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
router = "10.77.0.1"
dns = ["10.77.0.1"]
domain = "edge.example"
lease_time = "1h"
range = ["10.77.0.100", "10.77.0.199"]

[[boot_profile]]
name = "default"
bios = "undionly.kpxe"
uefi_x64 = "ipxe.efi"
http = "http://10.77.0.1:8080/ipxe.efi"
ipxe_script = "http://10.77.0.1:8080/boot.ipxe"

[[machine]]
mac = "52:54:00:00:00:01"
ip = "10.77.0.10"
hostname = "node1"

[[machine]]
mac = "52:54:00:00:00:02"
hostname = "node2"                 # no ip: gets one from the dynamic range
TOML

echo "== starting netbootd --config $WORK/netbootd.toml"
ip netns exec "$SRV" "$NB" --config "$WORK/netbootd.toml" > "$WORK/netbootd.log" 2>&1 &
NB_PID=$!
for _ in $(seq 1 50); do
    ip netns exec "$SRV" curl -fs http://10.77.0.1:9464/healthz >/dev/null 2>&1 && break
    kill -0 "$NB_PID" 2>/dev/null || { cat "$WORK/netbootd.log"; exit 1; }
    sleep 0.1
done
cat "$WORK/netbootd.log"

cat > "$WORK/hook.sh" <<'HOOK'
#!/bin/sh
[ "$1" = bound ] && echo "   udhcpc: bound ip=$ip mask=$mask router=$router dns=$dns hostname=$hostname lease=$lease"
exit 0
HOOK
chmod +x "$WORK/hook.sh"

echo "== registered machine 52:54:00:00:00:01 asks for an address"
ip netns exec "$CLI" udhcpc -f -q -n -t 3 -T 1 -i cli0 -s "$WORK/hook.sh" -x hostname:node1 2>&1 | grep -v '^udhcpc: \(started\|broadcasting\|sending\|lease of\)' || true

echo "== an unknown MAC asks (expected: no answer)"
ip -n "$CLI" link set cli0 address 02:de:ad:be:ef:01
ip netns exec "$CLI" udhcpc -f -q -n -t 2 -T 1 -i cli0 -s "$WORK/hook.sh" >/dev/null 2>&1 && echo "   unexpected lease!" || echo "   no lease, as expected"

echo "== netbootd leases"
"$NB" leases --config "$WORK/netbootd.toml"
echo "== selected metrics"
ip netns exec "$SRV" curl -fs http://10.77.0.1:9464/metrics | grep -E '^netbootd_dhcp_(replies_total|dropped_total\{reason="unknown_mac"\}|active_leases)' || true

echo
echo "netbootd is running in namespace $SRV (metrics: ip netns exec $SRV curl http://10.77.0.1:9464/metrics)."
echo "Press Ctrl-C to stop and clean up."
wait "$NB_PID"
