//! Uplink sessions over real QUIC on loopback (the control plane's server in this process, a
//! test edge from tests/uplink_client): Welcome and the site's snapshot, REST changes pushed
//! as deltas within a second, heartbeats in `/api/workers` (and a stale one inactive), events
//! recorded exactly once with their effects on machines, leases and the timeline. On SQLite
//! and PostgreSQL.

mod support;
mod uplink_client;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use axum::http::StatusCode;
use ims_control::db::now_ms;
use ims_control::uplink::tokens;
use ims_proto::{
    ControlMessage, Delta, EdgeEvent, EdgeEventKind, EdgeMessage, EventBatch, Heartbeat,
    LeaseEvent, MacAddr, Metrics, PhoneHome, ServiceError, ServiceState, ServiceStatus, Snapshot,
    SnapshotAck, TftpCompleted, TftpStarted, TransferFailed,
};
use serde_json::{Value, json};
use support::TestApp;
use uplink_client::{Edge, Stream, start};

async fn post(app: &TestApp, uri: &str, body: Value) -> Value {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{uri}: {}", r.body);
    r.body
}

/// Sites `lab` and `other`, a cluster in each, a profile for each plus a global one, a pool
/// for `lab`, one machine in each cluster.
async fn seed(app: &TestApp) {
    post(app, "/api/sites", json!({"name": "lab"})).await;
    post(app, "/api/sites", json!({"name": "other"})).await;
    post(app, "/api/cluster", json!({"name": "c-lab", "site": "lab"})).await;
    post(
        app,
        "/api/cluster",
        json!({"name": "c-other", "site": "other"}),
    )
    .await;
    post(
        app,
        "/api/boot-profiles",
        json!({"name": "p-lab", "site": "lab", "bios": "pxelinux.0", "kernel": "vmlinuz"}),
    )
    .await;
    post(
        app,
        "/api/boot-profiles",
        json!({"name": "p-other", "site": "other", "bios": "other.0"}),
    )
    .await;
    post(
        app,
        "/api/boot-profiles",
        json!({"name": "p-global", "uefi_x64": "ipxe.efi"}),
    )
    .await;
    post(
        app,
        "/api/ippools",
        json!({"site": "lab", "cidr": "10.7.0.0/24", "gateway": "10.7.0.1",
               "range_start": "10.7.0.100", "range_end": "10.7.0.200", "dns": ["10.7.0.53"]}),
    )
    .await;
    post(
        app,
        "/api/machines",
        json!({"cluster": "c-lab", "hostname": "node-1", "mac": "52:54:00:00:07:01",
               "ip": "10.7.0.11", "boot_profile": "p-lab"}),
    )
    .await;
    post(
        app,
        "/api/machines",
        json!({"cluster": "c-other", "hostname": "far-1", "mac": "52:54:00:00:08:01"}),
    )
    .await;
}

fn mac(last: u8, sub: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, sub, last])
}

async fn enrolled(app: &TestApp, addr: SocketAddr, fp: &str) -> Edge {
    let t = tokens::issue(&app.state.db, fp, "lab", Duration::from_secs(600), now_ms())
        .await
        .expect("token")
        .token
        .to_string();
    Edge::enroll(addr, &t, "edge-a").await
}

/// Connects and reads Welcome and the first Snapshot.
async fn session(edge: &Edge, addr: SocketAddr, delta: bool) -> (Stream, Snapshot) {
    let mut s = edge.connect(addr, delta).await.expect("connect");
    let ControlMessage::Welcome(w) = s.recv().await else {
        panic!("Welcome first")
    };
    assert_eq!(w.worker_id, edge.response.worker_id);
    let ControlMessage::Snapshot(snap) = s.recv().await else {
        panic!("then a Snapshot")
    };
    s.send(&EdgeMessage::SnapshotAck(SnapshotAck {
        generation: snap.generation,
    }))
    .await
    .expect("ack");
    (s, snap)
}

/// The next Delta within `limit`, skipping nothing else (any other message fails).
async fn next_delta(s: &mut Stream, limit: Duration) -> Delta {
    match s.recv_within(limit).await {
        Ok(ControlMessage::Delta(d)) => d,
        other => panic!("expected a Delta within {limit:?}, got {other:?}"),
    }
}

async fn welcome_snapshot_and_deltas(app: &TestApp) {
    seed(app).await;
    let server = start(&app.state, Duration::from_millis(1500)).await;
    let edge = enrolled(app, server.addr, server.ca.fingerprint()).await;
    let mut s = edge.connect(server.addr, true).await.expect("connect");
    let ControlMessage::Welcome(w) = s.recv().await else {
        panic!("Welcome first")
    };
    assert_eq!(w.site, "lab");
    assert_eq!(w.heartbeat_interval_ms, 1500);
    assert_eq!(w.capabilities, vec!["delta".to_owned()]);
    let ControlMessage::Snapshot(snap) = s.recv().await else {
        panic!("then a Snapshot")
    };
    // Only lab's machine, lab's and global profiles, lab's pool.
    assert_eq!(snap.machines.len(), 1, "{snap:?}");
    let m = &snap.machines[0];
    assert_eq!(m.mac, mac(1, 7));
    assert_eq!(m.ip, Some(Ipv4Addr::new(10, 7, 0, 11)));
    assert_eq!(m.hostname, "node-1");
    assert_eq!(m.boot_profile.as_deref(), Some("p-lab"));
    assert!(m.netboot);
    let names: Vec<&str> = snap.boot_profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["p-global", "p-lab"]);
    assert_eq!(snap.boot_profiles[1].kernel.as_deref(), Some("vmlinuz"));
    assert_eq!(snap.subnets.len(), 1);
    let n = &snap.subnets[0];
    assert_eq!(n.cidr.to_string(), "10.7.0.0/24");
    assert_eq!(n.gateway, Some(Ipv4Addr::new(10, 7, 0, 1)));
    assert_eq!(n.dns, vec![Ipv4Addr::new(10, 7, 0, 53)]);
    s.send(&EdgeMessage::SnapshotAck(SnapshotAck {
        generation: snap.generation,
    }))
    .await
    .expect("ack");

    // A machine added over REST reaches the edge within a second.
    let started = Instant::now();
    let created = post(
        app,
        "/api/machines",
        json!({"cluster": "c-lab", "hostname": "node-2", "mac": "52:54:00:00:07:02"}),
    )
    .await;
    let d = next_delta(&mut s, Duration::from_secs(1)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(d.base_generation, snap.generation);
    assert!(d.generation > snap.generation);
    assert_eq!(d.upsert_machines.len(), 1);
    assert_eq!(d.upsert_machines[0].hostname, "node-2");
    assert!(d.remove_machines.is_empty());
    let mut held = snap.clone();
    held.apply_delta(&d).expect("applies");

    // A change at another site sends nothing.
    post(
        app,
        "/api/machines",
        json!({"cluster": "c-other", "hostname": "far-2", "mac": "52:54:00:00:08:02"}),
    )
    .await;
    let quiet = s.recv_within(Duration::from_millis(800)).await;
    assert!(quiet.is_err(), "nothing for another site: {quiet:?}");

    // Netboot off, then the machine deleted: two more deltas, in order.
    let id = created["id"].as_i64().expect("id");
    let r = app
        .patch(&format!("/api/machines/{id}"), json!({"netboot": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = next_delta(&mut s, Duration::from_secs(1)).await;
    assert_eq!(d.base_generation, held.generation);
    assert_eq!(d.upsert_machines.len(), 1);
    assert!(!d.upsert_machines[0].netboot);
    held.apply_delta(&d).expect("applies");
    let r = app.delete(&format!("/api/machines/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let d = next_delta(&mut s, Duration::from_secs(1)).await;
    assert_eq!(d.remove_machines, vec![mac(2, 7)]);
    held.apply_delta(&d).expect("applies");
    assert_eq!(held.machines.len(), 1);

    // A resync request gets the whole state.
    s.send(&EdgeMessage::ResyncRequest(ims_proto::ResyncRequest {
        have_generation: Some(held.generation),
        reason: "test".into(),
    }))
    .await
    .expect("send");
    let ControlMessage::Snapshot(full) = s.recv().await else {
        panic!("a full snapshot after a resync request")
    };
    assert_eq!(full.machines, held.machines);

    // Without the delta capability, changes come as full snapshots.
    let (mut plain, first) = session(&edge, server.addr, false).await;
    post(
        app,
        "/api/machines",
        json!({"cluster": "c-lab", "hostname": "node-3", "mac": "52:54:00:00:07:03"}),
    )
    .await;
    match plain.recv_within(Duration::from_secs(1)).await {
        Ok(ControlMessage::Snapshot(next)) => {
            assert!(next.generation > first.generation);
            assert_eq!(next.machines.len(), 2);
        }
        other => panic!("expected a Snapshot, got {other:?}"),
    }
    server.stop().await;
}

dual_test!(welcome_snapshot_and_deltas);

fn heartbeat(seq: u64, dhcp: ServiceState, error: Option<&str>) -> EdgeMessage {
    let mut hb = Heartbeat {
        seq,
        metrics: Metrics {
            active_leases: 3,
            outbox_depth: 1,
            ..Metrics::default()
        },
        ..Heartbeat::default()
    };
    hb.services.insert(
        "dhcp".into(),
        ServiceStatus {
            state: dhcp,
            last_error: error.map(Into::into),
            last_error_at_ms: None,
        },
    );
    EdgeMessage::Heartbeat(hb)
}

async fn heartbeats_show_in_the_api(app: &TestApp) {
    seed(app).await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let edge = enrolled(app, server.addr, server.ca.fingerprint()).await;
    let worker = edge.response.worker_id.clone();
    let (mut s, _) = session(&edge, server.addr, true).await;

    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["status"], "active", "{}", w.body);
    assert_eq!(w.body["ip_address"], "127.0.0.1");

    s.send(&heartbeat(1, ServiceState::Running, None))
        .await
        .expect("send");
    let ControlMessage::HeartbeatAck(ack) = s.recv().await else {
        panic!("HeartbeatAck")
    };
    assert_eq!(ack.seq, 1);
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["status"], "active");
    assert_eq!(w.body["services"]["dhcp"]["status"], "running");
    assert_eq!(w.body["metrics"]["active_leases"], 3);
    assert_eq!(w.body["metrics"]["hostname"], "edge-test");
    assert!(w.body["last_heartbeat"].is_string());

    s.send(&heartbeat(2, ServiceState::Error, Some("eth1 is down")))
        .await
        .expect("send");
    let ControlMessage::HeartbeatAck(ack) = s.recv().await else {
        panic!("HeartbeatAck")
    };
    assert_eq!(ack.seq, 2);
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["status"], "error");
    assert!(
        w.body["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("eth1 is down")),
        "{}",
        w.body
    );
    let listed = app.get("/api/workers?status=error").await;
    assert_eq!(listed.body["count"], 1, "{}", listed.body);

    // Three missed intervals: shown inactive (the clock is moved by ageing the stored time).
    sqlx::query("UPDATE workers SET last_heartbeat = $1 WHERE worker_id = $2")
        .bind(now_ms() - 31_000)
        .bind(worker.as_str())
        .execute(app.state.db.pool())
        .await
        .expect("age");
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["status"], "inactive");
    // The next heartbeat makes it active again.
    s.send(&heartbeat(3, ServiceState::Running, None))
        .await
        .expect("send");
    assert!(matches!(s.recv().await, ControlMessage::HeartbeatAck(_)));
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["status"], "active");
    server.stop().await;
}

dual_test!(heartbeats_show_in_the_api);

fn ev(id: u64, kind: EdgeEventKind) -> EdgeEvent {
    EdgeEvent {
        id,
        at_ms: now_ms(),
        kind,
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([10, 7, 0, 11], 2070))
}

fn lease(m: MacAddr) -> EdgeEventKind {
    EdgeEventKind::LeaseGranted(LeaseEvent {
        mac: m,
        ip: Ipv4Addr::new(10, 7, 0, 11),
        hostname: Some("node-1".into()),
        lease_end_ms: now_ms() + 3_600_000,
        boot_file: Some("pxelinux.0".into()),
        subnet: Some("10.7.0.0/24".parse().expect("cidr")),
    })
}

async fn send_batch(s: &mut Stream, batch: Vec<EdgeEvent>) -> u64 {
    s.send(&EdgeMessage::Events(EventBatch { batch }))
        .await
        .expect("send");
    loop {
        match s.recv().await {
            ControlMessage::EventsAck(a) => return a.up_to,
            // Machine changes the events cause may come first.
            ControlMessage::Delta(_) | ControlMessage::Snapshot(_) => {}
            other => panic!("expected EventsAck, got {other:?}"),
        }
    }
}

async fn machine(app: &TestApp, m: MacAddr) -> Value {
    let r = app.get(&format!("/api/machines?mac={m}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["results"][0].clone()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(app.state.db.pool())
        .await
        .expect("count");
    n
}

async fn events_are_recorded_exactly_once(app: &TestApp) {
    seed(app).await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let edge = enrolled(app, server.addr, server.ca.fingerprint()).await;
    let worker = edge.response.worker_id.clone();
    let (mut s, _) = session(&edge, server.addr, true).await;
    let m = mac(1, 7);
    let id = machine(app, m).await["id"].as_i64().expect("id");

    // A lease with a boot file: DEPLOYING, lease visible.
    assert_eq!(send_batch(&mut s, vec![ev(1, lease(m))]).await, 1);
    assert_eq!(machine(app, m).await["status"], "DEPLOYING");
    let leases = app.get(&format!("/api/leases?mac={m}")).await;
    assert_eq!(leases.body["count"], 1, "{}", leases.body);
    assert_eq!(leases.body["results"][0]["ip_address"], "10.7.0.11");
    assert_eq!(leases.body["results"][0]["binding_state"], "active");
    assert_eq!(leases.body["results"][0]["bootfile_url"], "pxelinux.0");
    assert_eq!(leases.body["results"][0]["worker_id"], worker.as_str());

    // A failed transfer: ERROR.
    let failed = EdgeEventKind::TftpFailed(TransferFailed {
        mac: Some(m),
        peer: peer(),
        path: "pxelinux.0".into(),
        reason: "timeout".into(),
        bytes: 0,
        duration_ms: 5000,
        retransmits: 5,
        status: None,
    });
    assert_eq!(send_batch(&mut s, vec![ev(2, failed)]).await, 2);
    assert_eq!(machine(app, m).await["status"], "ERROR");

    // A retry that completes and phones home: ACTIVE, netboot off; a service error.
    let rest = vec![
        ev(3, lease(m)),
        ev(
            4,
            EdgeEventKind::TftpStarted(TftpStarted {
                mac: Some(m),
                peer: peer(),
                path: "pxelinux.0".into(),
                blksize: 1468,
                windowsize: 4,
                tsize: true,
            }),
        ),
        ev(
            5,
            EdgeEventKind::TftpCompleted(TftpCompleted {
                mac: Some(m),
                peer: peer(),
                path: "pxelinux.0".into(),
                blksize: 1468,
                windowsize: 4,
                bytes: 26_000,
                duration_ms: 40,
                retransmits: 0,
            }),
        ),
        ev(
            6,
            EdgeEventKind::PhoneHome(PhoneHome {
                mac: m,
                ip: Some("10.7.0.11".parse().expect("ip")),
                body: None,
            }),
        ),
        ev(
            7,
            EdgeEventKind::ServiceError(ServiceError {
                service: "tftp".into(),
                message: "disk full".into(),
            }),
        ),
    ];
    assert_eq!(send_batch(&mut s, rest.clone()).await, 7);
    let after = machine(app, m).await;
    assert_eq!(after["status"], "ACTIVE");
    assert_eq!(after["netboot"], false);
    let timeline = app.get(&format!("/api/machines/{id}/events")).await;
    assert_eq!(timeline.body["count"], 6, "{}", timeline.body);
    let kinds: Vec<&str> = timeline.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in [
        "lease",
        "transfer_failed",
        "transfer_started",
        "transfer_completed",
        "phone_home",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert!(
        w.body["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("tftp: disk full")),
        "{}",
        w.body
    );
    // The edge hears that the machine no longer netboots.
    let mut saw_netboot_off = false;
    while let Ok(msg) = s.recv_within(Duration::from_secs(1)).await {
        if let ControlMessage::Delta(d) = msg {
            saw_netboot_off |= d.upsert_machines.iter().any(|x| x.mac == m && !x.netboot);
        }
        if saw_netboot_off {
            break;
        }
    }
    assert!(
        saw_netboot_off,
        "phone-home turns netboot off at the edge too"
    );

    // The same batch again (a lost ack), on this connection and on a new one: acknowledged,
    // recorded once.
    let operator = app
        .patch(
            &format!("/api/machines/{id}"),
            json!({"status": "MAINTENANCE"}),
        )
        .await;
    assert_eq!(operator.status, StatusCode::OK, "{}", operator.body);
    assert_eq!(send_batch(&mut s, rest.clone()).await, 7);
    let (mut again, _) = session(&edge, server.addr, true).await;
    assert_eq!(send_batch(&mut again, rest).await, 7);
    let timeline = app.get(&format!("/api/machines/{id}/events")).await;
    assert_eq!(timeline.body["count"], 6, "{}", timeline.body);
    assert_eq!(count(app, "SELECT COUNT(*) FROM edge_events").await, 7);
    assert_eq!(
        machine(app, m).await["status"],
        "MAINTENANCE",
        "a replayed phone-home changes nothing"
    );
    let leases = app.get(&format!("/api/leases?mac={m}")).await;
    assert_eq!(leases.body["count"], 1);
    server.stop().await;
}

dual_test!(events_are_recorded_exactly_once);
