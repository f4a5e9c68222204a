//! Who may not use the uplink, over real QUIC on loopback: a certificate from another CA, a
//! connection without a client certificate, an enrolment request on the uplink, a revoked
//! worker (its live session is dropped within seconds, and it cannot come back). On SQLite and
//! PostgreSQL.

mod support;
mod uplink_client;

use std::time::Duration;

use tokio::time::Instant;

use ims_control::db::now_ms;
use ims_control::uplink::ca::parse_csr;
use ims_control::uplink::{Ca, registry, tokens};
use ims_proto::{ControlMessage, EdgeMessage, EnrollRequest, ErrorCode, Heartbeat};
use serde_json::json;
use support::TestApp;
use uplink_client::{
    Edge, Stream, anonymous_uplink_config, connect, edge_key, start, uplink_config,
};

async fn lab_edge(app: &TestApp, addr: std::net::SocketAddr, fp: &str) -> Edge {
    let r = app.post("/api/sites", json!({"name": "lab"})).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let t = tokens::issue(&app.state.db, fp, "lab", Duration::from_secs(600), now_ms())
        .await
        .expect("token")
        .token
        .to_string();
    Edge::enroll(addr, &t, "edge-a").await
}

/// The first message on `s`, or why none came.
async fn first(s: &mut Stream) -> Result<ControlMessage, String> {
    s.recv_within(Duration::from_secs(5)).await
}

fn unauthorized(msg: Result<ControlMessage, String>) -> String {
    match msg {
        Ok(ControlMessage::Error(e)) if e.code == ErrorCode::Unauthorized => e.message,
        other => panic!("expected Error{{Unauthorized}}, got {other:?}"),
    }
}

async fn foreign_and_anonymous_clients_are_refused(app: &TestApp) {
    let server = start(&app.state, Duration::from_secs(10)).await;
    let edge = lab_edge(app, server.addr, server.ca.fingerprint()).await;

    // A certificate naming the same worker, issued by another CA: TLS refuses it.
    let other = Ca::generate(now_ms()).expect("ca");
    let (key, csr) = edge_key();
    let forged = other
        .issue_worker_cert(
            parse_csr(&csr).expect("csr"),
            &edge.response.worker_id,
            "lab",
            now_ms(),
        )
        .expect("cert");
    let config = uplink_config(&edge.response.ca_der, &forged.der, &key);
    let outcome = async {
        let link = connect(server.addr, config).await?;
        let mut s = Stream::open(link).await?;
        s.send(&uplink_client::hello("x", true)).await?;
        first(&mut s).await
    }
    .await;
    match outcome {
        // The server's TLS refuses the chain (same issuer name, another key).
        Err(e) => assert!(e.contains("invalid peer certificate"), "{e}"),
        Ok(msg) => panic!("a foreign certificate got an answer: {msg:?}"),
    }

    // No client certificate at all: Unauthorized.
    let link = connect(server.addr, anonymous_uplink_config(&edge.response.ca_der))
        .await
        .expect("TLS allows it");
    let mut s = Stream::open(link).await.expect("stream");
    s.send(&uplink_client::hello("x", true))
        .await
        .expect("send");
    let why = unauthorized(first(&mut s).await);
    assert!(why.contains("client certificate"), "{why}");

    // An enrolment request on the uplink: BadMessage.
    let mut s = edge.connect(server.addr, true).await.expect("connect");
    assert!(matches!(
        first(&mut s).await,
        Ok(ControlMessage::Welcome(_))
    ));
    assert!(matches!(
        first(&mut s).await,
        Ok(ControlMessage::Snapshot(_))
    ));
    s.send(&EdgeMessage::EnrollRequest(EnrollRequest::default()))
        .await
        .expect("send");
    match first(&mut s).await {
        Ok(ControlMessage::Error(e)) => assert_eq!(e.code, ErrorCode::BadMessage),
        other => panic!("expected BadMessage, got {other:?}"),
    }

    // The genuine certificate still works.
    let mut s = edge.connect(server.addr, true).await.expect("connect");
    assert!(matches!(
        first(&mut s).await,
        Ok(ControlMessage::Welcome(_))
    ));
    server.stop().await;
}

dual_test!(foreign_and_anonymous_clients_are_refused);

async fn revoked_workers_are_dropped_and_refused(app: &TestApp) {
    let server = start(&app.state, Duration::from_secs(10)).await;
    let edge = lab_edge(app, server.addr, server.ca.fingerprint()).await;
    let worker = edge.response.worker_id.clone();
    let mut live = edge.connect(server.addr, true).await.expect("connect");
    assert!(matches!(
        first(&mut live).await,
        Ok(ControlMessage::Welcome(_))
    ));
    assert!(matches!(
        first(&mut live).await,
        Ok(ControlMessage::Snapshot(_))
    ));

    let started = Instant::now();
    let r = registry::revoke(&app.state.db, &worker, now_ms())
        .await
        .expect("revoke");
    assert_eq!(
        (r.worker_id.as_str(), r.certificates, r.already),
        (worker.as_str(), 1, false)
    );
    let why = unauthorized(first(&mut live).await);
    assert!(why.contains("revoked"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "dropped after {:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), live.conn.closed())
        .await
        .expect("the connection closes");
    assert!(closed.to_string().contains("revoked"), "{closed}");

    // It cannot come back.
    let mut again = edge
        .connect(server.addr, true)
        .await
        .expect("TLS still accepts the chain");
    let why = unauthorized(first(&mut again).await);
    assert!(why.contains("revoked"), "{why}");
    let w = app.get(&format!("/api/workers/{worker}")).await;
    assert_eq!(w.body["revoked"], true);

    // Revoking twice says so; an unknown worker is not found.
    let r = registry::revoke(&app.state.db, &worker, now_ms())
        .await
        .expect("revoke");
    assert!(r.already && r.certificates == 0);
    assert!(
        registry::revoke(&app.state.db, "nobody", now_ms())
            .await
            .is_err()
    );
    server.stop().await;
}

dual_test!(revoked_workers_are_dropped_and_refused);

async fn heartbeats_check_revocation_too(app: &TestApp) {
    let server = start(&app.state, Duration::from_secs(10)).await;
    let edge = lab_edge(app, server.addr, server.ca.fingerprint()).await;
    let mut live = edge.connect(server.addr, true).await.expect("connect");
    assert!(matches!(
        first(&mut live).await,
        Ok(ControlMessage::Welcome(_))
    ));
    assert!(matches!(
        first(&mut live).await,
        Ok(ControlMessage::Snapshot(_))
    ));
    // Revoke behind the counter's back (as an older replica might): only the certificate row.
    sqlx::query("UPDATE worker_certs SET revoked = 1 WHERE worker_id = $1")
        .bind(edge.response.worker_id.as_str())
        .execute(app.state.db.pool())
        .await
        .expect("update");
    live.send(&EdgeMessage::Heartbeat(Heartbeat {
        seq: 1,
        ..Heartbeat::default()
    }))
    .await
    .expect("send");
    let why = unauthorized(first(&mut live).await);
    assert!(why.contains("revoked"), "{why}");
    server.stop().await;
}

dual_test!(heartbeats_check_revocation_too);
