//! End to end on loopback with two real processes: `ims-control serve` (SQLite in a temporary
//! data directory) and `netbootd` (HTTP boot only, no DHCP sockets, so no privileges needed).
//!
//! A site with a cluster, a boot profile, an IP pool and a machine is made over REST; `netbootd
//! enroll` joins with a token from `ims-control join-token`; the daemon then serves the
//! machine's iPXE script from the control plane's snapshot, shows up as an active worker, sees a
//! REST change to its boot profile within 1 s, and a phone-home turns the machine ACTIVE with
//! netboot off, which comes back to the edge as a change. The edge stops and, three missed
//! heartbeats later, shows inactive. Finally the control plane is stopped and `netbootd`
//! restarted: it serves from the snapshot it stored.
//!
//! `ims-control` is looked up next to this test binary (`target/debug/ims-control`); it exists
//! after `cargo test --workspace` or `cargo build -p ims-control`. Without it the test fails
//! saying so.
// A process test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::TempDir;
use support::control::{Control, Proc, edge_config, enroll, free_port, join_token, wait_for};
use support::http::http;
use support::site::NETBOOTD;

mod support;

const MAC: &str = "52:54:00:00:07:01";
const ADMIN_PASSWORD: &str = "e2e-admin-password-1";

fn netbootd() -> Command {
    Command::new(NETBOOTD)
}

fn script(http_port: u16) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let (status, body) = http("GET", addr, &format!("/boot.ipxe?mac={MAC}"), None, None)?;
    (status == 200).then_some(body)
}

#[test]
fn enrol_sync_heartbeat_phone_home_and_serve_from_the_snapshot() {
    let control_dir = TempDir::new(&format!("e2e-control-{}", std::process::id()));
    let edge_dir = TempDir::new(&format!("e2e-edge-{}", std::process::id()));
    let mut control = Control::start(control_dir.path(), ADMIN_PASSWORD);

    control.create("/api/sites", json!({"name": "lab"}));
    control.create("/api/cluster", json!({"name": "c-lab", "site": "lab"}));
    control.create(
        "/api/boot-profiles",
        json!({"name": "p-lab", "site": "lab", "bios": "undionly.kpxe", "kernel": "vmlinuz",
               "cmdline": "console=ttyS0 phone_home={phone_home}"}),
    );
    control.create(
        "/api/ippools",
        json!({"site": "lab", "cidr": "10.7.0.0/24", "gateway": "10.7.0.1",
               "range_start": "10.7.0.100", "range_end": "10.7.0.200"}),
    );
    let machine = control.create(
        "/api/machines",
        json!({"cluster": "c-lab", "hostname": "node-1", "mac": MAC, "ip": "10.7.0.11",
               "boot_profile": "p-lab"}),
    );
    let machine_id = machine["id"].clone();

    // A join token, then enrolment.
    let token = join_token(control_dir.path(), "lab");
    let http_port = free_port();
    let metrics_port = free_port();
    let config = edge_config(edge_dir.path(), control.quic, http_port, metrics_port);
    let printed = enroll(&config, control.quic, &token);
    assert!(printed.contains("site lab"), "{printed}");
    assert!(
        printed.contains(&format!("endpoint = \"{}\"", control.quic)),
        "{printed}"
    );

    // The daemon serves the machine from the snapshot and reports in.
    let mut edge = Proc::spawn({
        let mut c = netbootd();
        c.arg("--config").arg(&config).env("RUST_LOG", "info");
        c
    });
    let first = wait_for(Duration::from_secs(20), "the machine's iPXE script", || {
        script(http_port).filter(|s| s.contains("kernel "))
    });
    assert!(first.contains("phone-home"), "{first}");
    wait_for(Duration::from_secs(20), "an active worker", || {
        let (status, body) = control.call("GET", "/api/workers", None);
        (status == 200 && body.to_string().contains("\"active\"")).then_some(())
    });
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    wait_for(
        Duration::from_secs(10),
        "netbootd_uplink_connected 1",
        || {
            let (_, body) = http("GET", metrics, "/metrics", None, None)?;
            body.contains("netbootd_uplink_connected 1").then_some(())
        },
    );

    // A REST change reaches the edge within 1 s (the bound): the boot profile's command
    // line changes, and the edge's iPXE script shows it.
    let profile = control.call("GET", "/api/boot-profiles/p-lab", None).1;
    let changed = Instant::now();
    let (status, body) = control.call(
        "PATCH",
        &format!("/api/boot-profiles/{}", profile["id"]),
        Some(json!({"cmdline": "console=ttyS0 marker=rest-change phone_home={phone_home}"})),
    );
    assert_eq!(status, 200, "{body}");
    loop {
        if script(http_port).is_some_and(|s| s.contains("marker=rest-change")) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the REST change did not reach the edge within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = changed.elapsed();
    eprintln!("REST change visible at the edge after {took:?}");

    // Phone-home: the machine becomes ACTIVE and boots from disk next time (netboot off).
    let (status, body) = http(
        "POST",
        ([127, 0, 0, 1], http_port).into(),
        &format!("/phone-home/{MAC}"),
        None,
        Some(&json!({"installed": true})),
    )
    .unwrap();
    assert_eq!(status, 204, "{body}");
    wait_for(Duration::from_secs(20), "the machine ACTIVE", || {
        let (_, m) = control.call("GET", &format!("/api/machines/{machine_id}"), None);
        (m["status"] == "ACTIVE").then_some(())
    });
    wait_for(Duration::from_secs(10), "netboot off at the edge", || {
        script(http_port).filter(|s| s.contains("netboot is off"))
    });

    // The edge stops: after three missed heartbeats (1 s each here) the worker shows inactive.
    edge.stop();
    let stopped = Instant::now();
    wait_for(Duration::from_secs(10), "the worker inactive", || {
        let (status, body) = control.call("GET", "/api/workers?status=inactive", None);
        (status == 200 && body["count"] == 1).then_some(())
    });
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "inactive too early"
    );

    // The control plane goes away; the edge restarts and serves from its stored snapshot.
    control.proc.stop();
    let edge = Proc::spawn({
        let mut c = netbootd();
        c.arg("--config").arg(&config);
        c
    });
    let served = wait_for(
        Duration::from_secs(20),
        "the script after a restart",
        || script(http_port),
    );
    assert!(
        served.contains("netboot is off"),
        "{served}\n{}",
        edge.log()
    );
}
