//! The uplink across a control-plane outage, with real DHCP: `ims-control` and `netbootd` run in
//! the site's server namespace (the control plane on its loopback), busybox udhcpc in the client
//! namespace. Machines are registered over REST; the edge enrols and gets a lease for the first
//! machine while connected. The control plane is then killed for 30 s while two more machines
//! get leases. After its restart every lease event is recorded exactly once (one "lease
//! granted" timeline entry per machine), the leases are listed, and the edge's outbox is empty.
//! Needs root, iproute2 and udhcpc; `ims-control` must be built (`cargo test --workspace` does
//! it).
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::control::{NS_QUIC, NsControl, enroll_in_ns, wait};
use support::site::Site;

const PASSWORD: &str = "outage-admin-password";
const MACS: [&str; 3] = [
    "52:54:00:0a:00:01",
    "52:54:00:0a:00:02",
    "52:54:00:0a:00:03",
];

fn lease_granted_entries(control: &NsControl, machine: i64) -> usize {
    let events = control.call(
        "GET",
        &format!("/api/machines/{machine}/events?page_size=1000"),
        None,
    );
    events["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["kind"] == "lease"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("lease granted"))
        })
        .count()
}

#[test]
fn lease_events_made_while_the_control_plane_is_down_are_recorded_exactly_once() {
    let mut site = Site::new("uplinkout");
    let control_data = site.dir().join("control");
    std::fs::create_dir_all(&control_data).unwrap();
    let mut control = NsControl::start(
        &site,
        &control_data,
        &control_data.join("ims-control.log"),
        PASSWORD,
    );

    control.site_with_cluster("lab", "c-lab");
    control.call(
        "POST",
        "/api/boot-profiles",
        Some(json!({"name": "p-lab", "site": "lab", "bios": "undionly.kpxe"})),
    );
    control.lan_pool("lab");
    let ids: Vec<i64> = MACS
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let m = control.call(
                "POST",
                "/api/machines",
                Some(
                    json!({"cluster": "c-lab", "hostname": format!("node-{i}"), "mac": mac,
                            "ip": format!("10.77.0.{}", 11 + i), "boot_profile": "p-lab"}),
                ),
            );
            m["id"].as_i64().unwrap()
        })
        .collect();

    // Enrol: a token from the CLI (in the namespace, same data dir), then `netbootd enroll`.
    enroll_in_ns(&site, &control_data);

    // The edge: DHCP on srv0 with the subnet in the file (DHCP starts with it); machines and
    // boot profiles come from the control plane's snapshot.
    site.start_netbootd(&format!(
        "[[interface]]\nname = \"srv0\"\naddress = \"10.77.0.1\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/24\"\nlease_time = \"1h\"\n\
         range = [\"10.77.0.100\", \"10.77.0.150\"]\n\n[control]\nendpoint = \"{NS_QUIC}\"\n"
    ));
    site.wait_metric("netbootd_uplink_connected", &[], "== 1", |v| v == 1.0);

    // Connected: the first machine gets its lease; its event arrives.
    site.set_client_mac(MACS[0]);
    site.udhcpc("first", 5).expect_bound();
    wait("the first lease event at the control plane", 20, || {
        (lease_granted_entries(&control, ids[0]) == 1).then_some(())
    });

    // The control plane is down for 30 s; two more machines boot meanwhile.
    control.kill();
    let down = Instant::now();
    for (i, mac) in MACS.iter().enumerate().skip(1) {
        site.flush_client();
        site.set_client_mac(mac);
        let run = site.udhcpc(&format!("down-{i}"), 5);
        let bound = run.expect_bound();
        assert_eq!(
            bound.get("ip").map(String::as_str),
            Some(format!("10.77.0.{}", 11 + i).as_str())
        );
    }
    site.wait_metric("netbootd_uplink_outbox_depth", &[], ">= 2", |v| v >= 2.0);
    site.wait_metric("netbootd_uplink_connected", &[], "== 0", |v| v == 0.0);
    if let Some(rest) = Duration::from_secs(30).checked_sub(down.elapsed()) {
        std::thread::sleep(rest);
    }

    // Back: every event is recorded once and the outbox drains.
    let control = NsControl::start(
        &site,
        &control_data,
        &control_data.join("ims-control.log"),
        PASSWORD,
    );
    site.wait_metric("netbootd_uplink_outbox_depth", &[], "== 0", |v| v == 0.0);
    for (i, id) in ids.iter().enumerate() {
        wait(&format!("machine {i}'s lease event"), 30, || {
            (lease_granted_entries(&control, *id) >= 1).then_some(())
        });
        assert_eq!(
            lease_granted_entries(&control, *id),
            1,
            "machine {i}: lease granted recorded more than once"
        );
    }
    let leases = control.call("GET", "/api/leases?page_size=100", None);
    assert_eq!(leases["count"], 3, "{leases}");
}
