//! Enrolment over real QUIC on loopback, against the control plane's uplink server running in
//! this process, with a test edge (tests/uplink_client): a valid token enrols once, expired,
//! unknown and malformed tokens are refused, a token naming another CA fails the edge's own
//! certificate check, and a bad CSR is refused without spending the token. On SQLite and
//! PostgreSQL.

mod support;
mod uplink_client;

use std::time::Duration;

use axum::http::StatusCode;
use ims_control::db::now_ms;
use ims_control::uplink::identity::{fingerprint, peer_identity};
use ims_control::uplink::tokens::{self, JoinToken};
use ims_proto::ErrorCode;
use serde_json::json;
use support::TestApp;
use uplink_client::{Edge, Enrolled, edge_key, enroll, start};

async fn create_site(app: &TestApp, name: &str) -> i64 {
    let r = app.post("/api/sites", json!({ "name": name })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

async fn token(app: &TestApp, fp: &str, site: &str) -> String {
    tokens::issue(&app.state.db, fp, site, Duration::from_secs(3600), now_ms())
        .await
        .expect("issue")
        .token
        .to_string()
}

fn refused(e: Enrolled) -> ims_proto::ErrorReply {
    match e {
        Enrolled::Refused(r) => r,
        Enrolled::Ok(ok) => panic!("expected a refusal, got worker {}", ok.worker_id),
    }
}

async fn worker_count(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workers")
        .fetch_one(app.state.db.pool())
        .await
        .expect("count");
    n
}

async fn a_token_enrols_once(app: &TestApp) {
    let site_id = create_site(app, "Lab").await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let fp = server.ca.fingerprint().to_owned();
    let t = token(app, &fp, "lab").await;
    assert!(t.starts_with("IMS1.") && t.ends_with(&fp), "{t}");

    let edge = Edge::enroll(server.addr, &t, "Edge-1.example").await;
    let r = &edge.response;
    assert_eq!(r.worker_id, "lab-edge-1-example");
    assert_eq!(r.site, "Lab");
    assert_eq!(r.control_endpoint, None);
    assert_eq!(fingerprint(&r.ca_der), fp, "the CA the edge will trust");
    let id = peer_identity(&r.certificate_der).expect("identity");
    assert_eq!(id.worker_id, "lab-edge-1-example");
    assert_eq!(id.site, "Lab");

    // The worker exists (inactive until it connects), with its certificate on record.
    let w = app.get("/api/workers/lab-edge-1-example").await;
    assert_eq!(w.status, StatusCode::OK, "{}", w.body);
    assert_eq!(w.body["site"], site_id);
    assert_eq!(w.body["status"], "inactive");
    assert_eq!(w.body["version"], "0.1.0-test");
    assert_eq!(w.body["revoked"], false);
    let (serial,): (String,) =
        sqlx::query_as("SELECT serial FROM worker_certs WHERE worker_id = $1")
            .bind("lab-edge-1-example")
            .fetch_one(app.state.db.pool())
            .await
            .expect("cert row");
    assert_eq!(serial, id.serial);
    let (used_by,): (Option<String>,) =
        sqlx::query_as("SELECT worker_id FROM join_tokens WHERE used_at IS NOT NULL")
            .fetch_one(app.state.db.pool())
            .await
            .expect("token row");
    assert_eq!(used_by.as_deref(), Some("lab-edge-1-example"));

    // Spent: the same token is refused and enrols nobody.
    let (_, csr) = edge_key();
    let again = refused(
        enroll(server.addr, &t, "edge-2", csr)
            .await
            .expect("answer"),
    );
    assert_eq!(again.code, ErrorCode::InvalidToken);
    assert!(again.message.contains("already used"), "{}", again.message);
    assert_eq!(worker_count(app).await, 1);

    // A second edge with the same host name gets a unique id.
    let t2 = token(app, &fp, &site_id.to_string()).await;
    let twin = Edge::enroll(server.addr, &t2, "edge-1.example").await;
    assert_eq!(twin.response.worker_id, "lab-edge-1-example-2");
    assert_ne!(
        peer_identity(&twin.response.certificate_der)
            .expect("id")
            .serial,
        id.serial
    );
    server.stop().await;
}

dual_test!(a_token_enrols_once);

async fn expired_unknown_and_malformed_tokens_are_refused(app: &TestApp) {
    let site_id = create_site(app, "lab").await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let fp = server.ca.fingerprint().to_owned();

    let expired = JoinToken::generate(&fp);
    let mut conn = app.state.db.pool().acquire().await.expect("conn");
    tokens::insert(
        &mut conn,
        &expired,
        site_id,
        now_ms() - 1,
        now_ms() - 3_600_000,
    )
    .await
    .expect("insert");
    drop(conn);
    let (_, csr) = edge_key();
    let r = refused(
        enroll(server.addr, &expired.to_string(), "e", csr)
            .await
            .expect("answer"),
    );
    assert_eq!(r.code, ErrorCode::InvalidToken);
    assert!(r.message.contains("expired"), "{}", r.message);

    let unknown = JoinToken::generate(&fp);
    let (_, csr) = edge_key();
    let r = refused(
        enroll(server.addr, &unknown.to_string(), "e", csr)
            .await
            .expect("answer"),
    );
    assert_eq!(r.code, ErrorCode::InvalidToken);
    assert!(r.message.contains("not known"), "{}", r.message);

    let (_, csr) = edge_key();
    let r = refused(
        enroll(server.addr, &format!("IMS1.abc.{fp}"), "e", csr)
            .await
            .expect("answer"),
    );
    assert_eq!(r.code, ErrorCode::InvalidToken);
    assert!(r.message.contains("malformed"), "{}", r.message);
    assert_eq!(worker_count(app).await, 0);
    server.stop().await;
}

dual_test!(expired_unknown_and_malformed_tokens_are_refused);

async fn a_token_naming_another_ca_fails_the_edges_check(app: &TestApp) {
    create_site(app, "lab").await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let real = token(app, server.ca.fingerprint(), "lab").await;
    let other = ims_control::uplink::Ca::generate(now_ms()).expect("ca");
    let forged = format!(
        "{}.{}",
        real.rsplit_once('.').expect("parts").0,
        other.fingerprint()
    );
    let (_, csr) = edge_key();
    let err = enroll(server.addr, &forged, "e", csr)
        .await
        .expect_err("the handshake must fail");
    assert!(err.contains("fingerprint"), "{err}");
    assert_eq!(worker_count(app).await, 0);
    // The real token was not touched and still works.
    Edge::enroll(server.addr, &real, "e").await;
    server.stop().await;
}

dual_test!(a_token_naming_another_ca_fails_the_edges_check);

async fn bad_csrs_are_refused_without_spending_the_token(app: &TestApp) {
    create_site(app, "lab").await;
    let server = start(&app.state, Duration::from_secs(10)).await;
    let t = token(app, server.ca.fingerprint(), "lab").await;
    let r = refused(
        enroll(server.addr, &t, "e", b"not a csr".to_vec())
            .await
            .expect("answer"),
    );
    assert_eq!(r.code, ErrorCode::InvalidCsr);
    let (_, mut csr) = edge_key();
    let last = csr.len() - 1;
    csr[last] ^= 0x01; // the self-signature no longer verifies
    let r = refused(enroll(server.addr, &t, "e", csr).await.expect("answer"));
    assert_eq!(r.code, ErrorCode::InvalidCsr);
    assert!(r.message.contains("PKCS#10"), "{}", r.message);
    assert_eq!(worker_count(app).await, 0);
    let edge = Edge::enroll(server.addr, &t, "e").await;
    assert_eq!(edge.response.worker_id, "lab-e");
    server.stop().await;
}

dual_test!(bad_csrs_are_refused_without_spending_the_token);
