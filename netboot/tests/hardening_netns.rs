//! netbootd's hardening in network namespaces (run as root):
//! - started as root with `user = "nobody"`, it ends up as nobody with only `CAP_NET_RAW`
//!   (effective, permitted and bounding sets), no inheritable or ambient capabilities and
//!   no-new-privs set, and DHCP (a whole DORA, lease persisted) and TFTP still work;
//! - a DHCP flood from one MAC and a TFTP request flood from one address are cut to their rate
//!   limits (and counted) while another client is served at once.
// Tests drive real processes in real time: reading the clock is what they must do.
#![allow(clippy::disallowed_methods)]

mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::client::RawClient;
use support::dhcp::{Message, msg, opt};
use support::site::{CLIENT_IF, SERVER_IP, ip};
use support::tftp::{Lab, TFTP_ADDR};
use support::tftp_wire::{self, UdpClient};
use support::wait_until;

const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x99, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0x99, 0x00, 0x0b];

/// DHCP on srv0 with machines A (10.77.0.10) and B (10.77.0.11), then `extra`.
fn config(lab: &Lab, top: &str, dhcp_extra: &str, tftp_extra: &str) -> String {
    format!(
        r#"{top}
[[interface]]
name = "srv0"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
range = ["10.77.0.100", "10.77.0.199"]
boot_profile = "default"

[[boot_profile]]
name = "default"
bios = "undionly.kpxe"

[[machine]]
mac = "52:54:00:99:00:0a"
ip = "10.77.0.10"
hostname = "node-a"

[[machine]]
mac = "52:54:00:99:00:0b"
ip = "10.77.0.11"
hostname = "node-b"

[dhcp]
{dhcp_extra}

{}"#,
        lab.tftp_section(tftp_extra)
    )
}

fn xid() -> u32 {
    std::process::id().wrapping_mul(2_654_435_761) ^ 0x5a5a
}

/// Fields of `/proc/PID/status`.
fn status(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn field<'a>(status: &'a [(String, String)], key: &str) -> &'a str {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn make_readable(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[test]
fn root_drops_to_nobody_with_only_cap_net_raw_and_still_serves() {
    let mut lab = Lab::new("privdrop", None);
    let file = lab.put_random("undionly.kpxe", 100_000);
    // nobody must be able to read the served files.
    make_readable(lab.site.dir(), 0o755);
    make_readable(&lab.root, 0o755);
    make_readable(&lab.root.join("undionly.kpxe"), 0o644);
    let body = config(&lab, "user = \"nobody\"", "", "");
    lab.start(&body);
    let pid = lab.site.netbootd_pid().expect("netbootd runs");

    // The drop happens once the DHCP sockets are open, right after start.
    let dropped = wait_until(Duration::from_secs(10), || {
        let s = status(pid);
        field(&s, "Uid").starts_with("65534").then_some(s)
    });
    let s = dropped.unwrap_or_else(|| {
        panic!(
            "netbootd still runs as {:?} after 10 s\n{}",
            field(&status(pid), "Uid"),
            lab.site.daemon_log()
        )
    });
    let cap_net_raw = format!("{:016x}", 1u64 << 13);
    let want = [
        ("Uid", "65534\t65534\t65534\t65534".to_owned()),
        ("CapInh", "0000000000000000".to_owned()),
        ("CapPrm", cap_net_raw.clone()),
        ("CapEff", cap_net_raw.clone()),
        ("CapBnd", cap_net_raw),
        ("CapAmb", "0000000000000000".to_owned()),
        ("NoNewPrivs", "1".to_owned()),
    ];
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| field(&s, k) != v)
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", field(&s, k)))
        .collect();
    assert!(
        bad.is_empty(),
        "/proc/{pid}/status after the drop:\n{}\n{}",
        bad.join("\n"),
        lab.site.daemon_log()
    );
    let gid = field(&s, "Gid").split('\t').next().unwrap_or("").to_owned();
    assert!(gid != "0" && !gid.is_empty(), "Gid {:?}", field(&s, "Gid"));
    assert_eq!(
        field(&s, "Groups"),
        gid,
        "supplementary groups: only the user's group"
    );
    let log = lab.site.daemon_log();
    assert!(
        log.contains("dropped privileges") && log.contains("cap_net_raw"),
        "no log line saying what was kept\n{log}"
    );

    // DHCP still works: a whole DORA, the lease persisted.
    let client = RawClient::open(&lab.site);
    let x = xid();
    let offer = client
        .exchange(
            &Message::request(msg::DISCOVER, MAC_A, x),
            Duration::from_secs(6),
        )
        .unwrap_or_else(|e| panic!("DISCOVER after the drop: {e}\n{}", lab.site.daemon_log()));
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 10));
    let request = Message::request(msg::REQUEST, MAC_A, x)
        .with(opt::SERVER_ID, SERVER_IP.octets().to_vec())
        .with(opt::REQUESTED_IP, offer.yiaddr.octets().to_vec());
    let ack = client
        .exchange(&request, Duration::from_secs(6))
        .unwrap_or_else(|e| panic!("REQUEST after the drop: {e}\n{}", lab.site.daemon_log()));
    assert_eq!(ack.message_type(), Some(msg::ACK), "{ack:?}");
    lab.site
        .wait_lease("10.77.0.10", "52:54:00:99:00:0a", "bound");

    // TFTP still works, byte for byte.
    let got = lab
        .fetch(b"undionly.kpxe", "octet", &[("blksize", "1468")])
        .unwrap_or_else(|e| panic!("TFTP after the drop: {e:?}\n{}", lab.site.daemon_log()));
    assert!(
        got.data == file,
        "TFTP download differs from the served file"
    );
    assert!(lab.site.netbootd_alive());
}

#[test]
fn floods_from_one_mac_and_one_address_are_limited_while_others_are_served() {
    let mut lab = Lab::new("ratelimit", None);
    lab.put("f.bin", b"small boot file");
    // A second client address on the same link.
    ip(&[
        "-n",
        &lab.site.client_ns,
        "addr",
        "add",
        "10.77.0.3/24",
        "dev",
        CLIENT_IF,
    ]);
    let body = config(
        &lab,
        "",
        "rate_limit_per_mac = 1\nrate_limit_burst = 5",
        "rate_limit_per_ip = 1\nrate_limit_burst = 5",
    );
    lab.start(&body);

    // DHCP: 300 DISCOVERs from MAC A as fast as the socket takes them.
    let client = RawClient::open(&lab.site);
    let flood = Message::request(msg::DISCOVER, MAC_A, xid()).encode();
    let started = Instant::now();
    for _ in 0..300 {
        client.send(&flood);
    }
    // Meanwhile B is answered at once.
    let offer = client
        .exchange(
            &Message::request(msg::DISCOVER, MAC_B, xid() ^ 1),
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("B during A's flood: {e}\n{}", lab.site.daemon_log()));
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 11));
    // At most the burst plus one per second of the flood got through.
    let passed_max = 5 + started.elapsed().as_secs() + 1;
    let limited = lab.site.wait_metric(
        "netbootd_dhcp_rate_limited_total",
        &[],
        &format!("at least {}", 300 - passed_max),
        |v| v >= (300 - passed_max) as f64,
    );
    assert!(limited <= 295.0, "{limited}: B or the burst was limited");
    let offers = lab
        .site
        .metric("netbootd_dhcp_replies_total", &[("type", "offer")]);
    assert!(
        offers <= (passed_max + 1) as f64,
        "{offers} OFFERs for a limited flood"
    );

    // TFTP: 200 read requests from 10.77.0.2, each from a new port, paced at one per
    // millisecond so the listener's socket buffer never overflows (every one is counted).
    let flooders: Vec<UdpClient> = (0..200).map(|_| lab.udp()).collect();
    let rrq = tftp_wire::request(1, b"f.bin", "octet", &[]);
    let started = Instant::now();
    for c in &flooders {
        c.send(&rrq, SocketAddr::V4(TFTP_ADDR));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Another address is served at once.
    let other = UdpClient::open_at(
        &lab.site.client_ns,
        SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 3), 0),
    );
    let got = tftp_wire::fetch(
        &other,
        SocketAddr::V4(TFTP_ADDR),
        b"f.bin",
        "octet",
        &[],
        Duration::from_secs(10),
        |_, _| {},
    )
    .unwrap_or_else(|e| {
        panic!(
            "10.77.0.3 during the flood: {e:?}\n{}",
            lab.site.daemon_log()
        )
    });
    assert_eq!(got.data, b"small boot file");
    let passed_max = 5 + started.elapsed().as_secs() + 1;
    let limited = lab.site.wait_metric(
        "netbootd_tftp_rate_limited_total",
        &[],
        &format!("at least {}", 200 - passed_max),
        |v| v >= (200 - passed_max) as f64,
    );
    assert!(limited <= 195.0, "{limited}");
    // The flooders that got through were answered; the others heard nothing.
    let answered = flooders
        .iter()
        .filter(|c| c.recv(Duration::from_millis(20)).is_some())
        .count();
    assert!(
        (1..=passed_max as usize).contains(&answered),
        "{answered} flood requests answered"
    );
}
