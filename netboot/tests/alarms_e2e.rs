//! End to end on loopback with two real processes (as in `uplink_e2e.rs`): `ims-control serve`
//! (SQLite in a temporary data directory, heartbeat interval 1 s, the shortest it allows) and
//! an enrolled `netbootd` (HTTP boot only, no privileges needed).
//!
//! The O2ims edge-down alarm follows the edge process: while `netbootd` runs there is none;
//! after a SIGTERM (by PID) and three missed heartbeats an open `edge-down` alarm (MAJOR) on the
//! worker appears in `GET /o2ims-infrastructureMonitoring/v1/alarms`; once `netbootd` is started
//! again and heartbeats resume, the same alarm is cleared (`alarmClearedTime` set,
//! `perceivedSeverity` 5).
//!
//! `ims-control` is looked up next to this test binary (`target/debug/ims-control`); it exists
//! after `cargo test --workspace` or `cargo build -p ims-control`. Without it the test fails
//! saying so.
// A process test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TempDir;
use support::control::{Control, Proc, edge_config, enroll, free_port, join_token, wait_for};
use support::site::NETBOOTD;

mod support;

const ADMIN_PASSWORD: &str = "e2e-admin-password-2";
const ALARMS: &str = "/o2ims-infrastructureMonitoring/v1/alarms";

/// The edge-down alarms of `worker` (by its name).
fn edge_down(control: &Control, worker: &str) -> Vec<Value> {
    control
        .get(&format!(
            "{ALARMS}?filter=(eq,extensions/alarmName,edge-down)"
        ))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["extensions"]["objectName"] == worker)
        .collect()
}

fn netbootd(config: &Path) -> Proc {
    let mut c = Command::new(NETBOOTD);
    c.arg("--config").arg(config).env("RUST_LOG", "info");
    Proc::spawn(c)
}

#[test]
fn an_edge_down_alarm_follows_the_edge_process() {
    let control_dir = TempDir::new(&format!("alarms-e2e-control-{}", std::process::id()));
    let edge_dir = TempDir::new(&format!("alarms-e2e-edge-{}", std::process::id()));
    let mut control = Control::start(control_dir.path(), ADMIN_PASSWORD);
    control.create("/api/sites", json!({"name": "lab"}));

    // Enrol an edge with a join token.
    let token = join_token(control_dir.path(), "lab");
    let config = edge_config(edge_dir.path(), control.quic, free_port(), free_port());
    enroll(&config, control.quic, &token);

    // Running: an active worker, no alarm.
    let mut edge = netbootd(&config);
    let worker = wait_for(Duration::from_secs(20), "an active worker", || {
        let list = control.get("/api/workers?status=active");
        list["results"][0]["worker_id"].as_str().map(str::to_owned)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        edge_down(&control, &worker).is_empty(),
        "alarm while the edge runs"
    );

    // Stopped: an open edge-down alarm within a few heartbeat intervals.
    edge.stop();
    let stopped = Instant::now();
    let alarm = wait_for(Duration::from_secs(15), "an edge-down alarm", || {
        edge_down(&control, &worker)
            .into_iter()
            .find(|a| a["alarmClearedTime"].is_null())
    });
    let raised_after = stopped.elapsed();
    eprintln!("edge-down alarm raised {raised_after:?} after SIGTERM");
    assert!(
        raised_after >= Duration::from_secs(2),
        "alarm before three heartbeats were missed"
    );
    assert_eq!(alarm["perceivedSeverity"], 1, "{alarm}");
    assert_eq!(alarm["objectClass"], "ims.control.EdgeWorker", "{alarm}");
    assert_eq!(alarm["objectTypeId"], alarm["resourceTypeID"], "{alarm}");
    let id = alarm["alarmEventRecordId"].as_str().unwrap().to_owned();
    let spec = control.get(&format!("/O2ims_infrastructureMonitoring/v1/alarms/{id}"));
    assert_eq!(spec["alarmEventRecordId"], id);

    // Back: the same alarm is cleared.
    let back = Instant::now();
    let edge = netbootd(&config);
    let cleared = wait_for(Duration::from_secs(20), "the alarm cleared", || {
        let a = control.get(&format!("{ALARMS}/{id}"));
        a["alarmClearedTime"].is_string().then_some(a)
    });
    eprintln!("edge-down alarm cleared {:?} after restart", back.elapsed());
    assert_eq!(cleared["perceivedSeverity"], 5, "{cleared}\n{}", edge.log());
    assert_eq!(edge_down(&control, &worker).len(), 1, "a second alarm");
    control.proc.stop();
}
