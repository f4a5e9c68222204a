//! End-to-end tests of netbootd's DHCP server against real clients (ISC dhclient, busybox udhcpc,
//! ISC dhcrelay) and hand-crafted packets, in network namespaces the tests create and remove.
//!
//! They need root (CI runs them as root through `.ci/run`) and the packages `.ci/run` installs:
//! iproute2, isc-dhcp-client, udhcpc (busybox), isc-dhcp-relay.
// Tests drive real processes in real time: reading the clock is what they must do.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::client::{Event, RawClient};
use support::dhcp::{BOOTREPLY, Message, msg, opt, parse_mac, xid};
use support::site::{NETBOOTD, SERVER_IP, Site};

// Machines (MAC, reserved address or dynamic, hostname).
const MAC_A: &str = "02:77:00:00:10:0a";
const MAC_B: &str = "02:77:00:00:10:0b";
const MAC_C: &str = "02:77:00:00:10:0c";
const MAC_U: &str = "02:77:00:00:10:0d";
const MAC_R: &str = "02:77:00:00:10:0e";
const MAC_G: &str = "02:77:00:00:10:0f";
const MAC_UNKNOWN: &str = "02:77:00:00:99:99";

/// The boot profile every test site uses.
const PROFILE: &str = r#"
[[boot_profile]]
name = "default"
bios = "undionly.kpxe"
uefi_x64 = "ipxe.efi"
http = "http://10.77.0.1:8080/boot/ipxe.efi"
ipxe_script = "http://10.77.0.1:8080/boot.ipxe"
"#;

/// A `[[machine]]`.
struct M {
    mac: &'static str,
    ip: Option<&'static str>,
    hostname: &'static str,
}

const fn m(mac: &'static str, ip: Option<&'static str>, hostname: &'static str) -> M {
    M { mac, ip, hostname }
}

/// A config for the direct site: `srv0`, subnet 10.77.0.0/24 with dynamic `range`, the default
/// profile, `extra` (more subnets) and `machines`.
fn config(range: (&str, &str), extra: &str, machines: &[M]) -> String {
    let mut s = format!(
        r#"
[[interface]]
name = "srv0"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
router = "10.77.0.254"
dns = ["10.77.0.53", "10.77.0.54"]
domain = "edge.test"
lease_time = "1h"
range = ["{}", "{}"]
boot_profile = "default"
{extra}
{PROFILE}"#,
        range.0, range.1
    );
    for x in machines {
        s.push_str(&format!(
            "\n[[machine]]\nmac = \"{}\"\nhostname = \"{}\"\n",
            x.mac, x.hostname
        ));
        if let Some(ip) = x.ip {
            s.push_str(&format!("ip = \"{ip}\"\n"));
        }
    }
    s
}

const LAN_RANGE: (&str, &str) = ("10.77.0.100", "10.77.0.199");

/// Check hook variables; report every mismatch at once, with the whole event.
#[track_caller]
fn assert_vars(what: &str, e: &Event, want: &[(&str, &str)]) {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| e.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", e.get(*k)))
        .collect();
    assert!(bad.is_empty(), "{what}: {}\nevent: {e:#?}", bad.join("; "));
}

fn var<'a>(e: &'a Event, k: &str) -> &'a str {
    e.get(k).map_or("", String::as_str)
}

const ACTIVE: &str = "netbootd_dhcp_active_leases";
const RECEIVED: &str = "netbootd_dhcp_received_total";
const REPLIES: &str = "netbootd_dhcp_replies_total";
const DROPPED: &str = "netbootd_dhcp_dropped_total";

/// Issue test 1: ISC dhclient gets its reservation, router and DNS; `dhclient -r` releases it.
#[test]
fn dhclient_gets_reservation_and_releases_it() {
    let mut site = Site::new("dhclient");
    site.set_client_mac(MAC_A);
    site.start_netbootd(&config(
        LAN_RANGE,
        "",
        &[m(MAC_A, Some("10.77.0.10"), "node-a")],
    ));

    let d = site.dhclient_bind("dhclient");
    assert_vars(
        "dhclient BOUND",
        &d.bound,
        &[
            ("new_ip_address", "10.77.0.10"),
            ("new_subnet_mask", "255.255.255.0"),
            ("new_routers", "10.77.0.254"),
            ("new_domain_name_servers", "10.77.0.53 10.77.0.54"),
            ("new_domain_name", "edge.test"),
            ("new_host_name", "node-a"),
            ("new_dhcp_server_identifier", "10.77.0.1"),
            ("new_dhcp_lease_time", "3600"),
        ],
    );
    assert_eq!(site.client_addrs(), vec!["10.77.0.10/24".to_owned()]);
    site.wait_lease("10.77.0.10", MAC_A, "bound");

    let release = site.dhclient_release(&d);
    assert_eq!(
        var(&release, "old_ip_address"),
        "10.77.0.10",
        "RELEASE event: {release:#?}"
    );
    site.wait_lease("10.77.0.10", MAC_A, "released");
}

/// Issue test 2: busybox udhcpc gets its reservation, router, DNS and hostname.
#[test]
fn udhcpc_gets_reservation_router_dns_hostname() {
    let mut site = Site::new("udhcpc");
    site.set_client_mac(MAC_U);
    site.start_netbootd(&config(
        LAN_RANGE,
        "",
        &[m(MAC_U, Some("10.77.0.11"), "node-u")],
    ));

    let run = site.udhcpc("udhcpc", 5);
    let b = run.expect_bound();
    assert_vars(
        "udhcpc bound",
        b,
        &[
            ("ip", "10.77.0.11"),
            ("mask", "24"),
            ("router", "10.77.0.254"),
            ("dns", "10.77.0.53 10.77.0.54"),
            ("hostname", "node-u"),
            ("domain", "edge.test"),
            ("serverid", "10.77.0.1"),
            ("lease", "3600"),
        ],
    );
    assert!(
        run.outcome.success(),
        "udhcpc failed after binding:\n{}",
        run.outcome
    );
    site.wait_lease("10.77.0.11", MAC_U, "bound");
    site.wait_metric(REPLIES, &[("type", "offer")], ">= 1", |v| v >= 1.0);
    site.wait_metric(REPLIES, &[("type", "ack")], ">= 1", |v| v >= 1.0);
    site.wait_metric(
        RECEIVED,
        &[("interface", "srv0"), ("type", "discover")],
        ">= 1",
        |v| v >= 1.0,
    );
    site.wait_metric(
        RECEIVED,
        &[("interface", "srv0"), ("type", "request")],
        ">= 1",
        |v| v >= 1.0,
    );
    site.wait_metric(ACTIVE, &[], "1", |v| v == 1.0);
}

/// Issue test 3: an unregistered MAC gets nothing, and the drop is counted as `unknown_mac`.
#[test]
fn unknown_mac_gets_nothing() {
    let mut site = Site::new("unknown");
    site.set_client_mac(MAC_UNKNOWN);
    site.start_netbootd(&config(
        LAN_RANGE,
        "",
        &[m(MAC_A, Some("10.77.0.10"), "node-a")],
    ));
    let before = site.metric(DROPPED, &[("reason", "unknown_mac")]);

    let run = site.udhcpc("unknown", 2);
    assert!(
        run.bound().is_none(),
        "an unregistered MAC got a lease: {:#?}",
        run.events
    );
    assert!(
        !run.outcome.success(),
        "udhcpc should fail without a lease:\n{}",
        run.outcome
    );
    assert!(
        run.outcome.status.is_some(),
        "udhcpc -n should give up by itself:\n{}",
        run.outcome
    );

    site.wait_metric(
        DROPPED,
        &[("reason", "unknown_mac")],
        "above the count before",
        |v| v > before,
    );
    assert_eq!(
        site.metric(REPLIES, &[("type", "offer")]),
        0.0,
        "an offer was sent:\n{}",
        site.metrics()
    );
    let leases = site.leases();
    assert!(
        leases.iter().all(|l| l.mac != MAC_UNKNOWN),
        "the unknown MAC has a lease: {leases:#?}"
    );
    assert!(site.netbootd_alive());
}

/// Issue test 4: leases survive a restart (SIGTERM) and a crash (SIGKILL); a dynamic machine
/// gets the same address again after restart.
#[test]
fn leases_survive_restart() {
    let mut site = Site::new("restart");
    site.start_netbootd(&config(
        LAN_RANGE,
        "",
        &[
            m(MAC_A, Some("10.77.0.10"), "node-a"),
            m(MAC_B, None, "node-b"),
            m(MAC_C, None, "node-c"),
        ],
    ));
    fn bind(site: &mut Site, mac: &str, label: &str) -> String {
        site.flush_client();
        site.set_client_mac(mac);
        let run = site.udhcpc(label, 5);
        var(run.expect_bound(), "ip").to_owned()
    }
    assert_eq!(bind(&mut site, MAC_A, "a1"), "10.77.0.10");
    let b_ip = bind(&mut site, MAC_B, "b1");
    let c_ip = bind(&mut site, MAC_C, "c1");
    for ip in [&b_ip, &c_ip] {
        let last: u8 = ip
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        assert!(
            ip.starts_with("10.77.0.") && (100..=199).contains(&last),
            "{ip} is not in the range"
        );
    }
    assert_ne!(b_ip, c_ip, "two machines got the same dynamic address");
    let all = [
        ("10.77.0.10", MAC_A),
        (b_ip.as_str(), MAC_B),
        (c_ip.as_str(), MAC_C),
    ];
    for (ip, mac) in all {
        site.wait_lease(ip, mac, "bound");
    }

    // Graceful restart: the store alone must be enough.
    let status = site.stop_netbootd();
    assert!(
        status.is_some(),
        "netbootd did not exit within 10 s of SIGTERM"
    );
    for (ip, mac) in all {
        site.wait_lease(ip, mac, "bound"); // listed from the store while the daemon is down
    }
    site.start_again();
    site.wait_metric(ACTIVE, &[], "3 (leases loaded from the store)", |v| {
        v == 3.0
    });
    // C asks first: with the leases forgotten it would get B's (or the first) address.
    assert_eq!(
        bind(&mut site, MAC_C, "c2"),
        c_ip,
        "C got another address after restart"
    );
    assert_eq!(
        bind(&mut site, MAC_B, "b2"),
        b_ip,
        "B got another address after restart"
    );
    assert_eq!(bind(&mut site, MAC_A, "a2"), "10.77.0.10");

    // Crash: every ACKed lease was durable before the ACK left.
    site.kill_netbootd();
    site.start_again();
    for (ip, mac) in all {
        site.wait_lease(ip, mac, "bound");
    }
    site.wait_metric(ACTIVE, &[], "3 after a crash", |v| v == 3.0);
    assert_eq!(
        bind(&mut site, MAC_B, "b3"),
        b_ip,
        "B got another address after a crash"
    );
}

/// Issue test 5: DHCPRELEASE (dhclient -r) frees the lease: listing, metrics, and the address
/// (the only one in the range) goes to the next machine.
#[test]
fn release_frees_the_lease() {
    let mut site = Site::new("release");
    site.set_client_mac(MAC_B);
    site.start_netbootd(&config(
        ("10.77.0.100", "10.77.0.100"),
        "",
        &[m(MAC_B, None, "node-b"), m(MAC_C, None, "node-c")],
    ));
    site.wait_metric(ACTIVE, &[], "0 at start", |v| v == 0.0);

    let d = site.dhclient_bind("dhclient-b");
    assert_eq!(
        var(&d.bound, "new_ip_address"),
        "10.77.0.100",
        "event: {:#?}",
        d.bound
    );
    site.wait_lease("10.77.0.100", MAC_B, "bound");
    site.wait_metric(ACTIVE, &[], "1 once bound", |v| v == 1.0);
    let releases = site.metric(RECEIVED, &[("type", "release")]);

    site.dhclient_release(&d);
    site.wait_lease("10.77.0.100", MAC_B, "released");
    site.wait_metric(RECEIVED, &[("type", "release")], "one more RELEASE", |v| {
        v > releases
    });
    site.wait_metric(ACTIVE, &[], "0 after the release", |v| v == 0.0);

    site.flush_client();
    site.set_client_mac(MAC_C);
    let run = site.udhcpc("udhcpc-c", 5);
    assert_vars(
        "udhcpc bound (C)",
        run.expect_bound(),
        &[("ip", "10.77.0.100"), ("hostname", "node-c")],
    );
    site.wait_lease("10.77.0.100", MAC_C, "bound");
    site.wait_metric(ACTIVE, &[], "1 again", |v| v == 1.0);
}

/// Issue test 6: a client behind ISC dhcrelay gets its reservation on the relay's subnet.
#[test]
fn relayed_client_gets_reservation() {
    let mut site = Site::new_relayed("relay");
    site.set_client_mac(MAC_R);
    let relay_subnet = r#"
[[subnet]]
cidr = "10.88.0.0/24"
router = "10.88.0.1"
dns = ["10.88.0.53"]
lease_time = 600
range = ["10.88.0.100", "10.88.0.150"]
boot_profile = "default"
"#;
    site.start_netbootd(&config(
        LAN_RANGE,
        relay_subnet,
        &[m(MAC_R, Some("10.88.0.20"), "node-r")],
    ));
    site.start_dhcrelay();

    let run = site.udhcpc("udhcpc-relayed", 6);
    assert_vars(
        "udhcpc bound through the relay",
        run.expect_bound(),
        &[
            ("ip", "10.88.0.20"),
            ("mask", "24"),
            ("router", "10.88.0.1"),
            ("dns", "10.88.0.53"),
            ("hostname", "node-r"),
            ("serverid", "10.77.0.1"),
            ("lease", "600"),
        ],
    );
    site.wait_lease("10.88.0.20", MAC_R, "bound");
    site.wait_metric(REPLIES, &[("type", "ack")], ">= 1", |v| v >= 1.0);
}

/// One PXE firmware flavour and what it must be told.
struct PxeCase {
    name: &'static str,
    mac: &'static str,
    ip: &'static str,
    arch: u16,
    vendor_class: &'static str,
    user_class: Option<&'static str>,
    boot_file: &'static str,
    vendor_echo: &'static str,
    /// The boot file is a TFTP file name: option 66 must name the server.
    tftp: bool,
}

const PXE_CASES: [PxeCase; 4] = [
    PxeCase {
        name: "BIOS PXE (arch 0)",
        mac: "02:77:00:00:20:00",
        ip: "10.77.0.20",
        arch: 0,
        vendor_class: "PXEClient:Arch:00000:UNDI:002001",
        user_class: None,
        boot_file: "undionly.kpxe",
        vendor_echo: "PXEClient",
        tftp: true,
    },
    PxeCase {
        name: "UEFI x64 PXE (arch 7)",
        mac: "02:77:00:00:20:07",
        ip: "10.77.0.21",
        arch: 7,
        vendor_class: "PXEClient:Arch:00007:UNDI:003000",
        user_class: None,
        boot_file: "ipxe.efi",
        vendor_echo: "PXEClient",
        tftp: true,
    },
    PxeCase {
        name: "UEFI HTTP boot (arch 16)",
        mac: "02:77:00:00:20:16",
        ip: "10.77.0.22",
        arch: 16,
        vendor_class: "HTTPClient:Arch:00016:UNDI:003001",
        user_class: None,
        boot_file: "http://10.77.0.1:8080/boot/ipxe.efi",
        vendor_echo: "HTTPClient",
        tftp: false,
    },
    PxeCase {
        name: "iPXE (user class iPXE, arch 0)",
        mac: "02:77:00:00:20:99",
        ip: "10.77.0.23",
        arch: 0,
        vendor_class: "PXEClient:Arch:00000:UNDI:002001",
        user_class: Some("iPXE"),
        boot_file: "http://10.77.0.1:8080/boot.ipxe",
        vendor_echo: "PXEClient",
        // A URL: fetched by iPXE itself, no TFTP server name.
        tftp: false,
    },
];

/// A DISCOVER or REQUEST as PXE firmware sends it.
fn pxe_message(c: &PxeCase, message_type: u8, xid: u32) -> Message {
    let mut m = Message::request(message_type, parse_mac(c.mac), xid)
        .with(opt::MAX_SIZE, 1472u16.to_be_bytes().to_vec())
        .with(
            opt::PRL,
            vec![
                1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58,
                59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135, 175,
            ],
        )
        .with(opt::ARCH, c.arch.to_be_bytes().to_vec())
        .with(opt::NDI, vec![1, 3, 0])
        .with(opt::UUID, [vec![0], (1..=16).collect()].concat())
        .with(opt::VENDOR_CLASS, c.vendor_class.as_bytes().to_vec());
    if let Some(uc) = c.user_class {
        // iPXE sends the bare string (not RFC 3004 length-prefixed) and its own options.
        m = m
            .with(opt::USER_CLASS, uc.as_bytes().to_vec())
            .with(opt::IPXE, vec![19, 1, 1, 17, 1, 1]);
    }
    m
}

/// Everything a PXE OFFER/ACK must carry for `c`; returns the mismatches.
fn check_pxe_reply(c: &PxeCase, what: &str, want_type: u8, r: &Message) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |field: &str, ok: bool, got: String| {
        if !ok {
            bad.push(format!("{}: {what}: {field}: got {got}", c.name));
        }
    };
    check(
        "message type",
        r.message_type() == Some(want_type),
        format!("{:?}", r.message_type()),
    );
    check(
        &format!("yiaddr (want {})", c.ip),
        r.yiaddr.to_string() == c.ip,
        r.yiaddr.to_string(),
    );
    check(
        &format!("siaddr (want {SERVER_IP})"),
        r.siaddr == SERVER_IP,
        r.siaddr.to_string(),
    );
    check(
        "server id (54)",
        r.option_ip(opt::SERVER_ID) == Some(SERVER_IP),
        format!("{:?}", r.option_ip(opt::SERVER_ID)),
    );
    check(
        &format!("file field (want {:?})", c.boot_file),
        r.file_str() == c.boot_file,
        format!("{:?}", r.file_str()),
    );
    let o67 = r.option_str(opt::BOOTFILE);
    check(
        &format!("option 67 (want {:?})", c.boot_file),
        o67.as_deref() == Some(c.boot_file),
        format!("{o67:?}"),
    );
    let o60 = r.option_str(opt::VENDOR_CLASS);
    check(
        &format!("option 60 (want {:?})", c.vendor_echo),
        o60.as_deref() == Some(c.vendor_echo),
        format!("{o60:?}"),
    );
    if c.tftp {
        let o66 = r.option_str(opt::TFTP_SERVER);
        check(
            "option 66 (want \"10.77.0.1\")",
            o66.as_deref() == Some("10.77.0.1"),
            format!("{o66:?}"),
        );
    }
    bad
}

/// Issue test 7: PXE replies per firmware (arch 0, 7, 16, iPXE user class), and a full DORA.
#[test]
fn pxe_options_per_firmware() {
    let mut site = Site::new("pxe");
    let machines: Vec<M> = PXE_CASES
        .iter()
        .map(|c| m(c.mac, Some(c.ip), "pxe-node"))
        .collect();
    site.start_netbootd(&config(LAN_RANGE, "", &machines));
    let client = RawClient::open(&site);
    let mut bad = Vec::new();
    for c in &PXE_CASES {
        site.set_client_mac(c.mac);
        let discover = pxe_message(c, msg::DISCOVER, xid());
        match client.exchange(&discover, Duration::from_secs(6)) {
            Ok(offer) => bad.extend(check_pxe_reply(c, "OFFER", msg::OFFER, &offer)),
            Err(e) => bad.push(format!("{}: DISCOVER: {e}", c.name)),
        }
    }

    // Full DORA for UEFI x64: REQUEST the offered address, get the ACK, see the lease.
    let c = &PXE_CASES[1];
    site.set_client_mac(c.mac);
    let x = xid();
    let offer = client.exchange(&pxe_message(c, msg::DISCOVER, x), Duration::from_secs(6));
    match offer {
        Ok(offer) => {
            let request = pxe_message(c, msg::REQUEST, x)
                .with(opt::SERVER_ID, SERVER_IP.octets().to_vec())
                .with(opt::REQUESTED_IP, offer.yiaddr.octets().to_vec());
            match client.exchange(&request, Duration::from_secs(6)) {
                Ok(ack) => {
                    bad.extend(check_pxe_reply(c, "ACK", msg::ACK, &ack));
                    if ack.option_u32(opt::LEASE_TIME) != Some(3600) {
                        bad.push(format!(
                            "ACK lease time: got {:?}",
                            ack.option_u32(opt::LEASE_TIME)
                        ));
                    }
                }
                Err(e) => bad.push(format!("{}: REQUEST: {e}", c.name)),
            }
        }
        Err(e) => bad.push(format!("{}: DISCOVER before REQUEST: {e}", c.name)),
    }
    assert!(
        bad.is_empty(),
        "PXE replies are wrong:\n{}\n{}",
        bad.join("\n"),
        site.daemon_log()
    );
    site.wait_lease(c.ip, c.mac, "bound");
}

/// Issue test 8: malformed input is dropped and counted, never crashes the server, and the next
/// good client is served.
#[test]
fn malformed_packets_are_dropped_and_counted() {
    let mut site = Site::new("malformed");
    // Jumbo frames: the oversized message reaches the raw socket whole, not as IP fragments.
    site.set_mtu(9000);
    site.start_netbootd(&config(
        LAN_RANGE,
        "",
        &[m(MAC_G, Some("10.77.0.40"), "node-g")],
    ));
    let client = RawClient::open(&site);
    let good =
        Message::request(msg::DISCOVER, parse_mac(MAC_G), xid()).with(opt::PRL, vec![1, 3, 6]);

    let truncated = good.encode()[..100].to_vec();
    let mut bad_length = good.encode_header();
    bad_length.extend_from_slice(&[
        opt::MESSAGE_TYPE,
        1,
        msg::DISCOVER,
        opt::HOSTNAME,
        200,
        b'n',
        b'o',
        b'd',
        b'e',
    ]);
    let mut oversized = good.encode_header();
    oversized.extend_from_slice(&[opt::MESSAGE_TYPE, 1, msg::DISCOVER]);
    let mut junk: u32 = 0x1234_5678;
    while oversized.len() < 2400 {
        // Long options of junk, the last one running past the end.
        oversized.extend_from_slice(&[250, 255]);
        for _ in 0..255 {
            junk = junk.wrapping_mul(1_103_515_245).wrapping_add(12345);
            oversized.push((junk >> 16) as u8);
        }
    }
    oversized.extend_from_slice(&[251, 200, 1, 2, 3]);
    let mut reply = good.clone();
    reply.op = BOOTREPLY;
    let wrong_op = reply.encode();

    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated (100 bytes)", truncated, "malformed"),
        ("option length past the end", bad_length, "malformed"),
        ("oversized junk", oversized, "malformed"),
        ("BOOTREPLY sent to the server", wrong_op, "wrong_op"),
    ];
    for (name, bytes, reason) in cases {
        let before = site.metric(DROPPED, &[("reason", reason)]);
        client.send(&bytes);
        site.wait_metric(
            DROPPED,
            &[("reason", reason)],
            &format!("above {before} after {name}"),
            |v| v > before,
        );
        assert!(
            site.netbootd_alive(),
            "netbootd died after {name}:\n{}",
            site.daemon_log()
        );
    }
    assert_eq!(
        site.metric(REPLIES, &[]),
        0.0,
        "netbootd answered junk:\n{}",
        site.metrics()
    );
    drop(client);

    site.set_client_mac(MAC_G);
    let run = site.udhcpc("after-junk", 5);
    assert_vars(
        "udhcpc bound after junk",
        run.expect_bound(),
        &[("ip", "10.77.0.40"), ("hostname", "node-g")],
    );
    assert!(
        site.netbootd_alive(),
        "netbootd died:\n{}",
        site.daemon_log()
    );
    assert_eq!(site.http_get("/healthz").map(|r| r.0), Ok(200));
    assert_eq!(
        site.http_get("/readyz"),
        Ok((200, "ready\n".to_owned())),
        "still ready after junk"
    );
}

/// `/readyz` turns 200 only once the DHCP raw socket and the TFTP socket are open: the moment
/// [`Site::start_netbootd`] sees 200, with no further wait, `ss` shows UDP port 69 and netbootd's
/// packet socket, a single DISCOVER (sent once, never retransmitted) is received and answered,
/// and `netbootd_ready` is 1.
#[test]
fn readyz_is_200_only_once_dhcp_and_tftp_sockets_are_open() {
    let mut site = Site::new("readyz");
    let root = site.dir().join("tftp-root");
    std::fs::create_dir_all(&root).expect("tftp root");
    site.set_client_mac(MAC_A);
    let client = RawClient::open(&site);
    let body = format!(
        "[tftp]\nroot = \"{}\"\nlisten = \"{SERVER_IP}:69\"\n{}",
        root.display(),
        config(LAN_RANGE, "", &[m(MAC_A, Some("10.77.0.10"), "node-a")])
    );
    site.start_netbootd(&body);

    // Straight after the first 200: the sockets must already exist.
    let ns = site.server_ns.clone();
    let udp = site.run_in(&ns, &["ss", "-Hlun", "sport = :69"], Duration::from_secs(5));
    let packet = site.run_in(&ns, &["ss", "-H", "-0", "-p"], Duration::from_secs(5));
    let discover =
        Message::request(msg::DISCOVER, parse_mac(MAC_A), xid()).with(opt::PRL, vec![1, 3, 6]);
    client.send(&discover.encode());

    assert!(
        udp.stdout.contains(":69"),
        "/readyz answered 200 but nothing listens on UDP port 69:\n{udp:?}\n{}",
        site.daemon_log()
    );
    assert!(
        packet.stdout.contains("netbootd"),
        "/readyz answered 200 but netbootd has no packet socket:\n{packet:?}\n{}",
        site.daemon_log()
    );
    site.wait_metric(
        RECEIVED,
        &[("interface", "srv0"), ("type", "discover")],
        "1 (the one DISCOVER sent right after /readyz turned 200)",
        |v| v == 1.0,
    );
    site.wait_metric(REPLIES, &[("type", "offer")], "1", |v| v == 1.0);
    assert_eq!(site.metric("netbootd_ready", &[]), 1.0);
    assert_eq!(site.http_get("/readyz"), Ok((200, "ready\n".to_owned())));
}

/// The shipped example configs (`deploy/examples/netbootd*.toml`) are accepted by
/// `netbootd check-config`.
#[test]
fn example_configs_are_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let main = dir.join("netbootd.toml");
    assert!(main.exists(), "{} is missing", main.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("netbootd") && name.ends_with(".toml")
        })
        .collect();
    files.sort();
    // `check-config` also checks that the served root exists: point the examples' root at a
    // directory that does (the examples use /srv/netboot, absent on a build machine).
    let scratch = std::env::temp_dir().join(format!("nb-examples-{}", std::process::id()));
    let root = scratch.join("srv-netboot");
    std::fs::create_dir_all(&root).expect("create scratch root");
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let copy = scratch.join(path.file_name().expect("file name"));
        std::fs::write(&copy, text.replace("/srv/netboot", &root.to_string_lossy()))
            .expect("write copy");
        let out = support::run(
            Command::new(NETBOOTD)
                .arg("check-config")
                .arg("--config")
                .arg(&copy),
            Duration::from_secs(10),
        );
        assert!(
            out.success(),
            "netbootd check-config rejects {}:\n{out}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Discovery mode: on a subnet with `allow_unknown = true` an unknown MAC gets a dynamic address
/// and no boot file, and `netbootd discovered` lists it for the operator to register.
#[test]
fn discovery_mode_answers_and_records_unknown_macs() {
    let mut site = Site::new("discover");
    site.set_client_mac(MAC_UNKNOWN);
    site.start_netbootd(&config(
        LAN_RANGE,
        "allow_unknown = true",
        &[m(MAC_A, Some("10.77.0.10"), "node-a")],
    ));

    let run = site.udhcpc("discover", 3);
    let bound = run
        .bound()
        .unwrap_or_else(|| panic!("no lease in discovery mode: {:#?}", run.events));
    let ip = var(bound, "ip").to_owned();
    let last: u8 = ip
        .strip_prefix("10.77.0.")
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("address {ip} outside 10.77.0.0/24"));
    assert!(
        (100..=199).contains(&last),
        "{ip} outside the dynamic range"
    );
    assert_eq!(
        var(bound, "boot_file"),
        "",
        "no boot file for unknown machines"
    );

    let lease = site.wait_lease(&ip, MAC_UNKNOWN, "bound");
    assert!(
        lease
            .raw
            .get("boot_file")
            .is_none_or(serde_json::Value::is_null),
        "unknown machine got a boot file: {}",
        lease.raw
    );

    let out = support::run(
        Command::new(NETBOOTD)
            .arg("discovered")
            .arg("--config")
            .arg(site.config_path())
            .arg("--json"),
        Duration::from_secs(10),
    );
    assert!(out.success(), "netbootd discovered failed:\n{out}");
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"));
    let found = json.as_array().into_iter().flatten().find(|d| {
        d["mac"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(MAC_UNKNOWN))
    });
    let found = found.unwrap_or_else(|| panic!("{MAC_UNKNOWN} not listed as discovered:\n{out}"));
    assert_eq!(found["ip"].as_str(), Some(ip.as_str()), "{found}");
}
