//! Edge workers and leases over REST, on SQLite and PostgreSQL: the original design's worker
//! HTTP client end to end (register, heartbeat, report_lease, report_error), the derived
//! `inactive` status, input validation, authorisation, filters and pagination.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use axum::http::{Method, StatusCode};
use ims_control::db::now_ms;
use serde_json::{Value, json};
use support::{Resp, TestApp, assert_problem};

fn fields(resp: &Resp, status: StatusCode) -> Vec<String> {
    assert_problem(resp, status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

async fn ok(app: &TestApp, uri: &str, body: Value) -> Value {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    assert_eq!(r.content_type(), "application/json");
    r.body
}

async fn register(app: &TestApp, worker_id: &str, ip: &str) -> Value {
    ok(
        app,
        "/api/ims-worker/register/",
        json!({"worker_id": worker_id, "ip_address": ip}),
    )
    .await
}

/// A lease as the Go client's `LeaseInfo` marshals it (Go's `time.Time`: RFC 3339 with
/// nanoseconds and the local offset).
fn go_lease(ip: &str, mac: &str) -> Value {
    json!({
        "ip_address": ip, "mac_address": mac, "hostname": "node-1",
        "lease_start": "2026-03-01T20:00:00.123456789+08:00",
        "lease_end": "2026-03-01T13:00:00Z",
        "cidr": "10.77.0.0/24", "gateway": "10.77.0.1",
    })
}

async fn sql(app: &TestApp, statement: &str, worker_id: &str, value: i64) {
    sqlx::query(statement)
        .bind(value)
        .bind(worker_id)
        .execute(app.state.db.pool())
        .await
        .expect("sql");
}

async fn legacy_worker_flow(app: &TestApp) {
    let before = now_ms();
    let r = register(app, "ims-worker-1", "10.77.0.2").await;
    assert_eq!(r["status"], "registered");
    assert_eq!(
        (r["worker_id"].as_str(), r["worker_status"].as_str()),
        (Some("ims-worker-1"), Some("active"))
    );

    let hb = json!({
        "worker_id": "ims-worker-1",
        "services": {"dhcp": {"status": "running"}, "tftp": {"status": "running", "last_error": ""}},
        "metrics": {"cpu": 12.5, "leases": 3, "nested": {"a": [1, 2]}},
    });
    let r = ok(app, "/api/ims-worker/heartbeat/", hb.clone()).await;
    assert_eq!(
        (r["status"].as_str(), r["worker_status"].as_str()),
        (Some("ok"), Some("active"))
    );

    let r = ok(
        app,
        "/api/ims-worker/report_lease/",
        json!({"worker_id": "ims-worker-1", "lease": go_lease("10.77.0.50", "52-54-00-ab-cd-ef")}),
    )
    .await;
    let lease_id = r["lease_id"].as_i64().expect("lease_id");
    // The same IP and MAC again updates the lease in place.
    let mut again = go_lease("10.77.0.50", "52:54:00:AB:CD:EF");
    again["hostname"] = json!("node-1b");
    let r = ok(
        app,
        "/api/ims-worker/report_lease",
        json!({"worker_id": "ims-worker-1", "lease": again}),
    )
    .await;
    assert_eq!(r["lease_id"].as_i64(), Some(lease_id));

    let r = ok(app, "/api/ims-worker/report_error/", json!({"worker_id": "ims-worker-1", "error": {"message": "TFTP bind failed", "details": {"errno": 98}}})).await;
    assert_eq!(
        (r["status"].as_str(), r["worker_status"].as_str()),
        (Some("recorded"), Some("error"))
    );

    let list = app.get("/api/workers").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["count"], 1);
    let w = &list.body["results"][0];
    assert_eq!(w["worker_id"], "ims-worker-1");
    assert_eq!(w["ip_address"], "10.77.0.2");
    assert_eq!(w["status"], "error");
    // An empty last_error (Go's `omitempty` would drop it) is no error.
    assert_eq!(
        w["services"],
        json!({"dhcp": {"status": "running"}, "tftp": {"status": "running"}})
    );
    assert_eq!(w["metrics"], hb["metrics"]);
    let last_error = w["last_error"].as_str().unwrap();
    assert!(
        last_error.contains("TFTP bind failed") && last_error.contains("98"),
        "{last_error}"
    );
    assert!(w["last_heartbeat"].as_str().unwrap().ends_with('Z'));
    assert!(w["last_heartbeat_age_seconds"].as_i64().unwrap() <= 5);
    assert_eq!(
        (
            w["site"].clone(),
            w["cluster"].clone(),
            w["revoked"].clone()
        ),
        (Value::Null, Value::Null, json!(false))
    );
    let registered = ims_control::db::parse_ts(w["registered_at"].as_str().unwrap()).unwrap();
    assert!(registered >= before - 1000);
    let id = w["id"].as_i64().unwrap();
    assert_eq!(&app.get(&format!("/api/workers/{id}")).await.body, w);
    assert_eq!(&app.get("/api/workers/ims-worker-1/").await.body, w);

    let leases = app.get("/api/leases").await;
    assert_eq!(leases.body["count"], 1);
    let l = &leases.body["results"][0];
    assert_eq!(l["id"].as_i64(), Some(lease_id));
    assert_eq!(
        (l["ip_address"].as_str(), l["mac_address"].as_str()),
        (Some("10.77.0.50"), Some("52:54:00:AB:CD:EF"))
    );
    assert_eq!(
        (
            l["hostname"].as_str(),
            l["binding_state"].as_str(),
            l["worker_id"].as_str()
        ),
        (Some("node-1b"), Some("active"), Some("ims-worker-1"))
    );
    assert_eq!(
        (l["cidr"].as_str(), l["gateway"].as_str()),
        (Some("10.77.0.0/24"), Some("10.77.0.1"))
    );
    assert_eq!(
        (l["lease_start"].as_str(), l["lease_end"].as_str()),
        (
            Some("2026-03-01T12:00:00.123Z"),
            Some("2026-03-01T13:00:00.000Z")
        )
    );
    assert_eq!(&app.get(&format!("/api/leases/{lease_id}")).await.body, l);

    // A heartbeat with healthy services makes it active again; the last error is kept.
    let r = ok(app, "/api/ims-worker/heartbeat", hb).await;
    assert_eq!(r["worker_status"], "active");
    assert!(
        app.get("/api/workers/ims-worker-1").await.body["last_error"]
            .as_str()
            .unwrap()
            .contains("TFTP")
    );

    // Silent for 60 s: shown inactive, and filtered as such.
    sql(
        app,
        "UPDATE workers SET last_heartbeat = $1 WHERE worker_id = $2",
        "ims-worker-1",
        now_ms() - 60_000,
    )
    .await;
    let w = app.get("/api/workers/ims-worker-1").await.body;
    assert_eq!(w["status"], "inactive");
    assert!(w["last_heartbeat_age_seconds"].as_i64().unwrap() >= 60);
    assert_eq!(
        app.get("/api/workers?status=inactive").await.body["count"],
        1
    );
    assert_eq!(app.get("/api/workers?status=ACTIVE").await.body["count"], 0);
}
dual_test!(legacy_worker_flow);

async fn heartbeat_errors_and_reregistration(app: &TestApp) {
    register(app, "w1", "10.0.0.1").await;
    let r = ok(app, "/api/ims-worker/heartbeat", json!({
        "worker_id": "w1",
        "services": {"dhcp": {"status": "FAILED", "last_error": "bind: address in use"}, "tftp": {"status": "running"}},
        "metrics": null,
    })).await;
    assert_eq!(r["worker_status"], "error");
    let w = app.get("/api/workers/w1").await.body;
    assert_eq!(
        (w["status"].as_str(), w["last_error"].as_str()),
        (Some("error"), Some("dhcp: bind: address in use"))
    );
    assert_eq!(w["metrics"], json!({}));
    let r = ok(
        app,
        "/api/ims-worker/heartbeat",
        json!({"worker_id": "w1", "services": {"tftp": {"status": "error"}}}),
    )
    .await;
    assert_eq!(r["worker_status"], "error");
    assert_eq!(
        app.get("/api/workers/w1").await.body["last_error"],
        "tftp: status `error`"
    );
    assert_eq!(app.get("/api/workers?status=error").await.body["count"], 1);

    // Re-registering keeps registered_at, takes the new address, and is active again.
    sql(
        app,
        "UPDATE workers SET registered_at = $1 WHERE worker_id = $2",
        "w1",
        1_000_000,
    )
    .await;
    let r = register(app, "w1", "2001:db8::7").await;
    assert_eq!(r["worker_status"], "active");
    let w = app.get("/api/workers/w1").await.body;
    assert_eq!(
        (w["registered_at"].as_str(), w["ip_address"].as_str()),
        (Some("1970-01-01T00:16:40.000Z"), Some("2001:db8::7"))
    );
    assert_eq!(app.get("/api/workers").await.body["count"], 1);

    // Unregistered workers are told to register first.
    for (uri, body) in [
        ("/api/ims-worker/heartbeat", json!({"worker_id": "ghost"})),
        (
            "/api/ims-worker/report_lease",
            json!({"worker_id": "ghost", "lease": go_lease("10.0.0.9", "02:00:00:00:00:01")}),
        ),
        (
            "/api/ims-worker/report_error",
            json!({"worker_id": "ghost", "error": {"message": "x"}}),
        ),
    ] {
        let r = app.post(uri, body).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
        assert!(
            r.body["detail"].as_str().unwrap().contains("register"),
            "{}",
            r.body
        );
    }
    assert_eq!(app.get("/api/leases").await.body["count"], 0);

    // A revoked worker may no longer report or re-register.
    sql(
        app,
        "UPDATE workers SET revoked = $1 WHERE worker_id = $2",
        "w1",
        1,
    )
    .await;
    assert_problem(
        &app.post("/api/ims-worker/heartbeat", json!({"worker_id": "w1"}))
            .await,
        StatusCode::FORBIDDEN,
    );
    let r = app
        .post(
            "/api/ims-worker/register",
            json!({"worker_id": "w1", "ip_address": "10.0.0.1"}),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/workers/w1").await.body["revoked"], true);
}
dual_test!(heartbeat_errors_and_reregistration);

async fn legacy_input_validation(app: &TestApp) {
    register(app, "w1", "10.0.0.1").await;
    let cases = [
        (
            "/api/ims-worker/register",
            json!({"ip_address": "10.0.0.1"}),
            vec!["worker_id"],
        ),
        (
            "/api/ims-worker/register",
            json!({"worker_id": "a b", "ip_address": "10.0.0.300"}),
            vec!["worker_id", "ip_address"],
        ),
        (
            "/api/ims-worker/register",
            json!({"worker_id": "x".repeat(101), "ip_address": "10.0.0.1"}),
            vec!["worker_id"],
        ),
        (
            "/api/ims-worker/register",
            json!({"worker_id": "w/2", "ip_address": null}),
            vec!["worker_id", "ip_address"],
        ),
        (
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "services": ["dhcp"]}),
            vec!["services"],
        ),
        (
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "services": {"dhcp": "up"}}),
            vec!["services.dhcp.status"],
        ),
        (
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "services": {"dhcp": {"state": "up"}}}),
            vec!["services.dhcp.status", "services.dhcp.state"],
        ),
        (
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "metrics": [1]}),
            vec!["metrics"],
        ),
        (
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "metrics": {"blob": "x".repeat(70_000)}}),
            vec!["metrics"],
        ),
        (
            "/api/ims-worker/report_lease",
            json!({"worker_id": "w1"}),
            vec!["lease"],
        ),
        (
            "/api/ims-worker/report_lease",
            json!({"worker_id": "w1", "lease": {}}),
            vec![
                "lease.ip_address",
                "lease.mac_address",
                "lease.lease_start",
                "lease.lease_end",
            ],
        ),
        (
            "/api/ims-worker/report_error",
            json!({"worker_id": "w1"}),
            vec!["error"],
        ),
        (
            "/api/ims-worker/report_error",
            json!({"worker_id": "w1", "error": {"details": {}}}),
            vec!["error.message"],
        ),
        (
            "/api/ims-worker/report_error",
            json!({"worker_id": "w1", "error": {"message": "m", "level": 3}}),
            vec!["error.level"],
        ),
    ];
    for (uri, body, expected) in cases {
        let r = app.post(uri, body.clone()).await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            expected,
            "{uri} {body}"
        );
    }
    let lease_cases = [
        ("ip_address", json!("10.0.0.256")),
        ("ip_address", json!("2001:db8::1")),
        ("mac_address", json!("52:54:00:12:34")),
        ("hostname", json!("a\nb")),
        ("lease_start", json!("yesterday")),
        ("lease_end", json!("2026-03-01T03:00:00Z")),
        ("lease_end", json!("0001-01-01T00:00:00Z")),
        ("cidr", json!("10.77.0.0/40")),
        ("gateway", json!("gw")),
        ("binding_state", json!("bound")),
        ("tftp_server", json!("tftp")),
        ("client_id", json!("x")),
    ];
    for (field, value) in lease_cases {
        let mut lease = go_lease("10.77.0.50", "52:54:00:12:34:56");
        lease[field] = value;
        let r = app
            .post(
                "/api/ims-worker/report_lease",
                json!({"worker_id": "w1", "lease": lease}),
            )
            .await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            [format!("lease.{field}")],
            "{field}"
        );
    }
    // Unknown top-level fields are refused; nothing was written by any of the above.
    let r = app
        .post(
            "/api/ims-worker/heartbeat",
            json!({"worker_id": "w1", "uptime": 5}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/api/leases").await.body["count"], 0);
    assert_eq!(app.get("/api/workers/w1").await.body["services"], json!({}));
    // The optional lease fields the Go client does not send are accepted; empty cidr/gateway too.
    let mut lease = go_lease("10.77.0.51", "525400123456");
    lease["cidr"] = json!("");
    lease["gateway"] = json!("");
    lease["binding_state"] = json!("Released");
    lease["bootfile_url"] = json!("http://10.77.0.1/boot.ipxe");
    lease["tftp_server"] = json!("10.77.0.1");
    ok(
        app,
        "/api/ims-worker/report_lease",
        json!({"worker_id": "w1", "lease": lease}),
    )
    .await;
    let l = &app.get("/api/leases").await.body["results"][0];
    assert_eq!(
        (
            l["cidr"].clone(),
            l["binding_state"].as_str(),
            l["tftp_server"].as_str()
        ),
        (Value::Null, Some("released"), Some("10.77.0.1"))
    );
}
dual_test!(legacy_input_validation);

async fn worker_auth_and_not_found(app: &TestApp) {
    register(app, "w1", "10.0.0.1").await;
    for uri in [
        "/api/ims-worker/register",
        "/api/ims-worker/heartbeat",
        "/api/ims-worker/report_lease",
        "/api/ims-worker/report_error",
    ] {
        let body = json!({"worker_id": "w1", "ip_address": "10.0.0.1"});
        assert_problem(
            &app.anonymous(Method::POST, uri, Some(body.clone())).await,
            StatusCode::UNAUTHORIZED,
        );
        assert_problem(
            &app.viewer(Method::POST, uri, Some(body)).await,
            StatusCode::FORBIDDEN,
        );
        assert_problem(&app.get(uri).await, StatusCode::METHOD_NOT_ALLOWED);
    }
    for uri in ["/api/workers", "/api/workers/w1", "/api/leases"] {
        assert_problem(
            &app.anonymous(Method::GET, uri, None).await,
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(
            app.viewer(Method::GET, uri, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    // Read-only over REST.
    assert_problem(
        &app.post("/api/workers", json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
    assert_problem(
        &app.delete("/api/leases/1").await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
    for uri in [
        "/api/workers/ghost",
        "/api/workers/999",
        "/api/leases/999",
        "/api/leases/x",
    ] {
        assert_problem(&app.get(uri).await, StatusCode::NOT_FOUND);
    }
}
dual_test!(worker_auth_and_not_found);

async fn worker_and_lease_filters(app: &TestApp) {
    let site = app.post("/api/sites", json!({"name": "edge"})).await.body;
    let sid = site["id"].as_i64().unwrap();
    for i in 0..4 {
        register(app, &format!("w{i}"), &format!("10.0.0.{i}")).await;
    }
    sql(
        app,
        "UPDATE workers SET site_id = $1 WHERE worker_id = $2",
        "w1",
        sid,
    )
    .await;
    sql(
        app,
        "UPDATE workers SET site_id = $1 WHERE worker_id = $2",
        "w2",
        sid,
    )
    .await;
    ok(
        app,
        "/api/ims-worker/report_error",
        json!({"worker_id": "w2", "error": {"message": "boom"}}),
    )
    .await;
    sql(
        app,
        "UPDATE workers SET last_heartbeat = $1 WHERE worker_id = $2",
        "w3",
        now_ms() - 31_000,
    )
    .await;

    let names = |r: &Resp| -> Vec<String> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["worker_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&app.get("/api/workers?site=edge").await),
        ["w1", "w2"]
    );
    assert_eq!(
        names(
            &app.get(&format!("/api/workers?site={sid}&status=error"))
                .await
        ),
        ["w2"]
    );
    assert_eq!(
        names(&app.get("/api/workers?status=active").await),
        ["w0", "w1"]
    );
    assert_eq!(
        names(&app.get("/api/workers?status=inactive").await),
        ["w3"]
    );
    let r = app.get("/api/workers?page=2&page_size=3").await;
    assert_eq!(
        (r.body["count"].as_i64(), names(&r)),
        (Some(4), vec!["w3".to_owned()])
    );
    let r = app.get("/api/workers?status=sleeping&site=nowhere").await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["status"]);
    let r = app.get("/api/workers?site=nowhere").await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["site"]);

    // Leases take the reporting worker's site.
    let report = |worker: &str, ip: &str, mac: &str, state: &str| {
        let mut lease = go_lease(ip, mac);
        lease["binding_state"] = json!(state);
        json!({"worker_id": worker, "lease": lease})
    };
    ok(
        app,
        "/api/ims-worker/report_lease",
        report("w1", "10.1.0.10", "02:00:00:00:00:01", "active"),
    )
    .await;
    ok(
        app,
        "/api/ims-worker/report_lease",
        report("w1", "10.1.0.11", "02:00:00:00:00:02", "expired"),
    )
    .await;
    ok(
        app,
        "/api/ims-worker/report_lease",
        report("w0", "10.2.0.10", "02:00:00:00:00:01", "active"),
    )
    .await;
    let ips = |r: &Resp| -> Vec<String> {
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ip_address"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ips(&app.get("/api/leases?site=edge").await),
        ["10.1.0.10", "10.1.0.11"]
    );
    assert_eq!(
        app.get("/api/leases?site=edge").await.body["results"][0]["site_name"],
        "edge"
    );
    assert_eq!(ips(&app.get("/api/leases?worker=w0").await), ["10.2.0.10"]);
    assert_eq!(
        ips(&app.get("/api/leases?mac=0200.0000.0001").await),
        ["10.1.0.10", "10.2.0.10"]
    );
    assert_eq!(
        ips(&app
            .get("/api/leases?mac=02-00-00-00-00-01&state=ACTIVE&site=edge")
            .await),
        ["10.1.0.10"]
    );
    assert_eq!(
        ips(&app.get("/api/leases?state=expired").await),
        ["10.1.0.11"]
    );
    let r = app.get("/api/leases?page=2&page_size=2").await;
    assert_eq!(
        (r.body["count"].as_i64(), ips(&r)),
        (Some(3), vec!["10.2.0.10".to_owned()])
    );
    let r = app.get("/api/leases?mac=zz&state=bound&page=0").await;
    assert_eq!(
        fields(&r, StatusCode::BAD_REQUEST),
        ["page", "mac", "state"]
    );
}
dual_test!(worker_and_lease_filters);
