//! `/api/machines…` on SQLite and PostgreSQL: CRUD, MAC normalisation, validation naming every
//! field, MAC/IP conflicts, roles, pagination and filters, metrics, provisioning events
//! recorded through the store, and a 10,000-machine page.
// Helpers called by the dual-backend tests unwrap like tests do.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode};
use ims_control::store::events::{NewEvent, record_event};
use ims_proto::MacAddr;
use serde_json::{Value, json};
use support::{TestApp, assert_problem};

async fn insert_named(app: &TestApp, table: &str, name: &str) -> i64 {
    let (id,): (i64,) = sqlx::query_as(&format!(
        "INSERT INTO {table} (name, description, created_at, updated_at) VALUES ($1,'',0,0) \
         RETURNING id"
    ))
    .bind(name)
    .fetch_one(app.state.db.pool())
    .await
    .expect("insert");
    id
}

async fn create_cluster(app: &TestApp, name: &str, site: Option<&str>) -> i64 {
    let r = app
        .post("/api/cluster", json!({"name": name, "site": site}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    r.body["id"].as_i64().expect("id")
}

async fn create_machine(app: &TestApp, body: Value) -> Value {
    let r = app.post("/api/machines", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    r.body
}

fn fields(errors: &[(String, String)]) -> Vec<&str> {
    let mut f: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    f.sort_unstable();
    f
}

async fn machine_crud(app: &TestApp) {
    let cid = create_cluster(app, "alpha", None).await;
    let pxe = insert_named(app, "boot_profiles", "pxe-linux").await;
    let m = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "node-1", "mac": "aa-bb-cc-dd-ee-fe"}),
    )
    .await;
    let id = m["id"].as_i64().unwrap();
    assert_eq!(m["cluster"], cid);
    assert_eq!(m["cluster_name"], "alpha");
    assert_eq!(m["hostname"], "node-1");
    assert_eq!(m["mac"], "AA:BB:CC:DD:EE:FE");
    assert_eq!(m["ip"], Value::Null);
    assert_eq!(m["cpu_cores"], 0);
    assert_eq!(m["role"], "WORKER");
    assert_eq!(m["os_type"], "LINUX");
    assert_eq!(m["status"], "INACTIVE");
    assert_eq!(m["health"], "UNKNOWN");
    assert_eq!(m["boot_profile"], Value::Null);
    assert_eq!(m["boot_profile_name"], Value::Null);
    assert_eq!(m["netboot"], true);
    assert_eq!(app.get(&format!("/api/machines/{id}")).await.body, m);

    // PUT replaces everything; references by name or id.
    let r = app
        .put(
            &format!("/api/machines/{id}"),
            json!({"cluster": cid, "hostname": "node-1.lab.example", "mac": "AABB.CCDD.EEFE",
                   "ip": "10.0.0.5", "cpu_cores": 64, "role": "master", "os_type": "windows",
                   "status": "Active", "health": "healthy", "boot_profile": "PXE-LINUX",
                   "netboot": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["mac"], "AA:BB:CC:DD:EE:FE");
    assert_eq!(r.body["ip"], "10.0.0.5");
    assert_eq!(r.body["cpu_cores"], 64);
    assert_eq!(r.body["role"], "MASTER");
    assert_eq!(r.body["os_type"], "WINDOWS");
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(r.body["health"], "HEALTHY");
    assert_eq!(r.body["boot_profile"], pxe);
    assert_eq!(r.body["boot_profile_name"], "pxe-linux");
    assert_eq!(r.body["netboot"], false);
    assert_eq!(r.body["created_at"], m["created_at"]);

    // PATCH: only what it names; null clears nullable fields.
    let r = app
        .patch(
            &format!("/api/machines/{id}"),
            json!({"ip": null, "boot_profile": null, "health": "WARNING"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["ip"], Value::Null);
    assert_eq!(r.body["boot_profile"], Value::Null);
    assert_eq!(r.body["health"], "WARNING");
    assert_eq!(r.body["role"], "MASTER");
    assert_eq!(r.body["netboot"], false);
    let r = app
        .patch(&format!("/api/machines/{id}"), json!({"boot_profile": pxe}))
        .await;
    assert_eq!(r.body["boot_profile_name"], "pxe-linux", "body: {}", r.body);

    // PUT without the optional fields resets them.
    let r = app
        .put(
            &format!("/api/machines/{id}"),
            json!({"cluster": "alpha", "hostname": "node-1", "mac": "aabbccddeefe"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["role"], "WORKER");
    assert_eq!(r.body["netboot"], true);
    assert_eq!(r.body["boot_profile"], Value::Null);
    assert_eq!(app.get("/api/machines").await.body["count"], 1);

    let r = app.delete(&format!("/api/machines/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .call(
                method,
                &format!("/api/machines/{id}"),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    for method in [Method::PUT, Method::PATCH] {
        let r = app
            .call(
                method,
                &format!("/api/machines/{id}"),
                Some(&app.admin_token),
                Some(json!({"hostname": "x"})),
            )
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    assert_problem(&app.get("/api/machines/x1").await, StatusCode::NOT_FOUND);
}

dual_test!(machine_crud);

async fn machine_validation(app: &TestApp) {
    create_cluster(app, "alpha", None).await;
    let r = app.post("/api/machines", json!({})).await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["cluster", "hostname", "mac"]
    );
    let r = app
        .post(
            "/api/machines",
            json!({"cluster": 9999, "hostname": "-bad-", "ip": "::1", "mac": "zz:bb:cc:dd:ee:ff",
                   "cpu_cores": 5000, "role": "BOSS", "os_type": 1, "status": "nope",
                   "health": null, "boot_profile": "nosuch", "netboot": "yes"}),
        )
        .await;
    let errors = assert_problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&errors),
        [
            "boot_profile",
            "cluster",
            "cpu_cores",
            "health",
            "hostname",
            "ip",
            "mac",
            "netboot",
            "os_type",
            "role",
            "status"
        ]
    );
    let msg = |f: &str| errors.iter().find(|(n, _)| n == f).unwrap().1.clone();
    assert!(msg("ip").contains("IPv6"), "{}", msg("ip"));
    assert!(msg("role").contains("MASTER, WORKER"), "{}", msg("role"));
    assert!(msg("cpu_cores").contains("4096"), "{}", msg("cpu_cores"));

    let base = json!({"cluster": "alpha", "hostname": "node-1", "mac": "52:54:00:00:00:01"});
    for (field, value) in [
        ("ip", json!("300.1.1.1")),
        ("ip", json!("junk")),
        ("ip", json!("10.0.0")),
        ("ip", json!("255.255.255.255")),
        ("ip", json!(17)),
        ("mac", json!("52:54:00:00:00")),
        ("mac", json!("01:00:5e:00:00:01")),
        ("mac", json!("00:00:00:00:00:00")),
        ("hostname", json!("")),
        ("hostname", json!("a..b")),
        ("hostname", json!("under_score")),
        ("hostname", json!("x".repeat(64))),
        ("hostname", json!(vec!["a".repeat(63); 4].join("."))),
        ("cpu_cores", json!(-1)),
        ("cpu_cores", json!(2.5)),
        ("cluster", json!("no-such-cluster")),
        ("cluster", json!(null)),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = app.post("/api/machines", body).await;
        assert_eq!(
            fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
            [field],
            "{field} = {value}"
        );
    }
    // Limits that are fine.
    let mut body = base.clone();
    body["hostname"] = json!(format!("{}.{}", "a".repeat(63), "b".repeat(63)));
    body["cpu_cores"] = json!(4096);
    body["ip"] = json!("");
    let m = create_machine(app, body).await;
    assert_eq!(m["ip"], Value::Null);
    let id = m["id"].as_i64().unwrap();

    let r = app
        .post("/api/machines", json!({"hostname": "x", "colour": "red"}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .patch(
            &format!("/api/machines/{id}"),
            json!({"hostname": null, "mac": null, "role": ""}),
        )
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["hostname", "mac", "role"]
    );
    // PUT needs the required fields, including the cluster.
    let r = app
        .put(&format!("/api/machines/{id}"), json!({"hostname": "n"}))
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["cluster", "mac"]
    );
    let r = app
        .call(Method::POST, "/api/machines", Some(&app.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

dual_test!(machine_validation);

async fn machine_conflicts(app: &TestApp) {
    create_cluster(app, "alpha", None).await;
    let first = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "n1", "mac": "aa-bb-cc-dd-ee-f0",
               "ip": "10.0.0.1"}),
    )
    .await;
    for mac in ["AA:BB:CC:DD:EE:F0", "aabb.ccdd.eef0", "aabbccddeef0"] {
        let r = app
            .post(
                "/api/machines",
                json!({"cluster": "alpha", "hostname": "n2", "mac": mac}),
            )
            .await;
        let errors = assert_problem(&r, StatusCode::CONFLICT);
        assert_eq!(fields(&errors), ["mac"], "{mac}");
        assert!(errors[0].1.contains("n1"), "{}", errors[0].1);
    }
    let r = app
        .post(
            "/api/machines",
            json!({"cluster": "alpha", "hostname": "n2", "mac": "aa:bb:cc:dd:ee:f1",
                   "ip": "10.0.0.1"}),
        )
        .await;
    assert_eq!(fields(&assert_problem(&r, StatusCode::CONFLICT)), ["ip"]);
    let second = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "n2", "mac": "aa:bb:cc:dd:ee:f1",
               "ip": "10.0.0.2"}),
    )
    .await;
    let uri = format!("/api/machines/{}", second["id"]);
    let r = app.patch(&uri, json!({"mac": "AA-BB-CC-DD-EE-F0"})).await;
    assert_eq!(fields(&assert_problem(&r, StatusCode::CONFLICT)), ["mac"]);
    let r = app.patch(&uri, json!({"ip": "10.0.0.1"})).await;
    assert_eq!(fields(&assert_problem(&r, StatusCode::CONFLICT)), ["ip"]);
    // Its own MAC and IP, respelled, are no conflict; a freed IP can be reused.
    let r = app
        .patch(&uri, json!({"mac": "aabbccddeef1", "ip": "10.0.0.2"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    let r = app
        .patch(
            &format!("/api/machines/{}", first["id"]),
            json!({"ip": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    let r = app.patch(&uri, json!({"ip": "10.0.0.1"})).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(app.get("/api/machines").await.body["count"], 2);
}

dual_test!(machine_conflicts);

async fn machine_roles(app: &TestApp) {
    create_cluster(app, "alpha", None).await;
    let m = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "n1", "mac": "02:00:00:00:00:01"}),
    )
    .await;
    let id = m["id"].as_i64().unwrap();
    for uri in [
        "/api/machines".to_owned(),
        format!("/api/machines/{id}"),
        format!("/api/machines/{id}/events"),
    ] {
        let r = app.viewer(Method::GET, &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        assert_problem(
            &app.anonymous(Method::GET, &uri, None).await,
            StatusCode::UNAUTHORIZED,
        );
    }
    // The viewer may read metrics (404: none yet), not write them.
    let r = app
        .viewer(Method::GET, &format!("/api/machines/{id}/metrics"), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let body = json!({"cluster": "alpha", "hostname": "n2", "mac": "02:00:00:00:00:02"});
    for (method, uri) in [
        (Method::POST, "/api/machines".to_owned()),
        (Method::PUT, format!("/api/machines/{id}")),
        (Method::PATCH, format!("/api/machines/{id}")),
        (Method::DELETE, format!("/api/machines/{id}")),
        (Method::PUT, format!("/api/machines/{id}/metrics")),
    ] {
        let b = (method != Method::DELETE).then(|| body.clone());
        let r = app.viewer(method.clone(), &uri, b.clone()).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
        let r = app.anonymous(method, &uri, b).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.get(&format!("/api/machines/{id}")).await.body, m);
}

dual_test!(machine_roles);

async fn machine_list_filters_and_pages(app: &TestApp) {
    let lab = insert_named(app, "sites", "lab").await;
    insert_named(app, "sites", "dc").await;
    let a = create_cluster(app, "alpha", Some("lab")).await;
    create_cluster(app, "beta", Some("dc")).await;
    create_cluster(app, "gamma", None).await;
    let specs = [
        ("alpha", "a1", "MASTER", "ACTIVE", "HEALTHY"),
        ("alpha", "a2", "WORKER", "ACTIVE", "WARNING"),
        ("alpha", "a3", "WORKER", "ERROR", "CRITICAL"),
        ("beta", "b1", "MASTER", "INACTIVE", "UNKNOWN"),
        ("beta", "b2", "STORAGE", "ACTIVE", "HEALTHY"),
        ("gamma", "g1", "GATEWAY", "DEPLOYING", "UNKNOWN"),
    ];
    for (i, (cluster, host, role, status, health)) in specs.iter().enumerate() {
        create_machine(
            app,
            json!({"cluster": cluster, "hostname": host, "role": role, "status": status,
                   "health": health, "mac": format!("02:00:00:00:00:{:02x}", i + 1),
                   "ip": format!("10.1.0.{}", i + 1)}),
        )
        .await;
    }
    for (q, hosts) in [
        ("".to_owned(), vec!["a1", "a2", "a3", "b1", "b2", "g1"]),
        ("cluster=alpha".to_owned(), vec!["a1", "a2", "a3"]),
        ("cluster=ALPHA".to_owned(), vec!["a1", "a2", "a3"]),
        (format!("cluster={a}"), vec!["a1", "a2", "a3"]),
        ("cluster=nope".to_owned(), vec![]),
        ("site=dc".to_owned(), vec!["b1", "b2"]),
        (format!("site={lab}"), vec!["a1", "a2", "a3"]),
        ("status=active".to_owned(), vec!["a1", "a2", "b2"]),
        ("role=MASTER".to_owned(), vec!["a1", "b1"]),
        ("role=worker&status=ERROR".to_owned(), vec!["a3"]),
        ("health=unknown".to_owned(), vec!["b1", "g1"]),
        ("mac=02-00-00-00-00-05".to_owned(), vec!["b2"]),
        ("mac=0200.0000.0006".to_owned(), vec!["g1"]),
        ("ip=10.1.0.4".to_owned(), vec!["b1"]),
        ("hostname=A2".to_owned(), vec!["a2"]),
        ("site=lab&role=master".to_owned(), vec!["a1"]),
    ] {
        let r = app.get(&format!("/api/machines?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        let got: Vec<&str> = r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["hostname"].as_str().unwrap())
            .collect();
        assert_eq!(got, hosts, "{q}");
        assert_eq!(r.body["count"], hosts.len(), "{q}");
    }
    for (q, field) in [
        ("mac=zz", "mac"),
        ("ip=10.0.0.300", "ip"),
        ("role=boss", "role"),
        ("status=x", "status"),
        ("health=x", "health"),
        ("page=0", "page"),
        ("page_size=10001", "page_size"),
        ("page_size=0", "page_size"),
    ] {
        let r = app.get(&format!("/api/machines?{q}")).await;
        assert_eq!(
            fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
            [field],
            "{q}"
        );
    }
    let r = app.get("/api/machines?mac=zz&role=boss").await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["mac", "role"]
    );
    // Pages.
    let r = app.get("/api/machines/?page=2&page_size=4").await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["count"], 6);
    assert_eq!(r.body["page"], 2);
    assert_eq!(r.body["page_size"], 4);
    let hosts: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["b2", "g1"]);
    let r = app.get("/api/machines?page=3&page_size=4").await;
    assert_eq!(r.body["results"], json!([]));
}

dual_test!(machine_list_filters_and_pages);

async fn machine_metrics(app: &TestApp) {
    create_cluster(app, "alpha", None).await;
    let m = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "n1", "mac": "02:00:00:00:00:01"}),
    )
    .await;
    let id = m["id"].as_i64().unwrap();
    let uri = format!("/api/machines/{id}/metrics");
    let r = app.get(&uri).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["detail"],
        format!("no metrics reported yet for machine {id}")
    );
    assert_problem(
        &app.get("/api/machines/9999/metrics").await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &app.put("/api/machines/9999/metrics", json!({})).await,
        StatusCode::NOT_FOUND,
    );

    let r = app
        .put(
            &uri,
            json!({"cpu_usage": 150, "memory_used": -1, "disk_usage": "x", "cpu_cores": 5000,
                   "network_incoming": 1.5}),
        )
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["cpu_cores", "cpu_usage", "disk_usage", "memory_used"]
    );
    assert_problem(
        &app.put(&uri, json!({"timestamp": "2020-01-01T00:00:00Z"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND);

    let body = json!({"cpu_usage": 42.5, "cpu_cores": 8, "memory_used": 12.25,
                      "memory_total": 64, "memory_usage": 19.1, "disk_used": 100,
                      "disk_total": 500, "disk_usage": 20, "network_incoming": 3.5,
                      "network_outgoing": 0.25});
    let r = app.put(&uri, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(r.body[k].as_f64(), v.as_f64(), "{k}");
    }
    assert_eq!(r.body["machine"], id);
    assert!(r.body["timestamp"].as_str().unwrap().ends_with('Z'));
    let got = app.get(&uri).await;
    assert_eq!(got.body, r.body);

    // A second PUT replaces (upsert), fields left out are 0.
    let r = app.put(&format!("{uri}/"), json!({"cpu_usage": 100})).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    let got = app.get(&uri).await.body;
    assert_eq!(got["cpu_usage"], 100.0);
    assert_eq!(got["memory_total"], 0.0);
    assert_eq!(got["cpu_cores"], 0);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM machine_metrics")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

dual_test!(machine_metrics);

fn event(mac: &str, event_id: &str, kind: &str, at_ms: i64) -> NewEvent {
    NewEvent {
        mac: mac.parse::<MacAddr>().unwrap(),
        worker_id: Some("edge-1".to_owned()),
        event_id: Some(event_id.to_owned()),
        kind: kind.to_owned(),
        message: format!("{kind} at {at_ms}"),
        detail: json!({"at": at_ms}),
        at_ms,
    }
}

async fn machine_events(app: &TestApp) {
    create_cluster(app, "alpha", None).await;
    let pool = app.state.db.pool();
    // An event before the machine exists is linked when it is created.
    let early = record_event(pool, &event("02:00:00:00:00:01", "e0", "lease", 1_000))
        .await
        .unwrap();
    assert!(early.is_some());
    let m = create_machine(
        app,
        json!({"cluster": "alpha", "hostname": "n1", "mac": "02-00-00-00-00-01"}),
    )
    .await;
    let id = m["id"].as_i64().unwrap();
    let mut tx = app.state.db.begin_write().await.unwrap();
    for (eid, kind, at) in [
        ("e1", "transfer_started", 2_000),
        ("e2", "transfer_completed", 3_000),
        ("e3", "phone_home", 4_000),
    ] {
        let got = record_event(&mut *tx, &event("02:00:00:00:00:01", eid, kind, at))
            .await
            .unwrap();
        assert!(got.is_some(), "{eid}");
    }
    tx.commit().await.unwrap();
    // A repeated event_id is ignored, not an error.
    let dup = record_event(pool, &event("02:00:00:00:00:01", "e2", "error", 9_000))
        .await
        .unwrap();
    assert_eq!(dup, None);
    // Another MAC's events are not this machine's.
    record_event(pool, &event("02:00:00:00:00:99", "x1", "lease", 5_000))
        .await
        .unwrap();
    assert!(
        record_event(pool, &event("02:00:00:00:00:01", "bad", "x y", 1))
            .await
            .is_err()
    );

    let uri = format!("/api/machines/{id}/events");
    let r = app.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["count"], 4);
    let kinds: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "phone_home",
            "transfer_completed",
            "transfer_started",
            "lease"
        ]
    );
    let e = &r.body["results"][0];
    assert_eq!(e["machine"], id);
    assert_eq!(e["mac"], "02:00:00:00:00:01");
    assert_eq!(e["worker_id"], "edge-1");
    assert_eq!(e["event_id"], "e3");
    assert_eq!(e["message"], "phone_home at 4000");
    assert_eq!(e["detail"], json!({"at": 4000}));
    assert_eq!(e["at"], "1970-01-01T00:00:04.000Z");

    let r = app.get(&format!("{uri}/?kind=TRANSFER_COMPLETED")).await;
    assert_eq!(r.body["count"], 1, "body: {}", r.body);
    assert_eq!(r.body["results"][0]["event_id"], "e2");
    let r = app.get(&format!("{uri}?page=2&page_size=3")).await;
    assert_eq!(r.body["count"], 4);
    assert_eq!(r.body["results"][0]["kind"], "lease");
    for q in ["kind=x%20y", "kind=a'b", "page_size=0"] {
        let r = app.get(&format!("{uri}?{q}")).await;
        assert_problem(&r, StatusCode::BAD_REQUEST);
    }
    assert_problem(
        &app.get("/api/machines/9999/events").await,
        StatusCode::NOT_FOUND,
    );
    // Deleting the machine deletes its events.
    app.delete(&format!("/api/machines/{id}")).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM machine_events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

dual_test!(machine_events);

/// A full 10,000-machine cluster in one page, with names joined and the count in the cluster
/// list (inserted with plain SQL to keep the test quick).
async fn ten_thousand_machines_in_one_page(app: &TestApp) {
    let cid = create_cluster(app, "big", None).await;
    let pxe = insert_named(app, "boot_profiles", "pxe").await;
    for batch in 0..20 {
        let values: Vec<String> = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                format!(
                    "({cid}, 'node-{n}', '10.{}.{}.{}', '02:00:00:00:{:02X}:{:02X}', 8, 'WORKER', \
                     'LINUX', 'ACTIVE', 'HEALTHY', {pxe}, 1, 0, 0)",
                    n / 65536,
                    (n / 256) % 256,
                    n % 256,
                    n / 256,
                    n % 256
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO machines (cluster_id, hostname, ip, mac, cpu_cores, role, os_type, \
             status, health, boot_profile_id, netboot, created_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .execute(app.state.db.pool())
        .await
        .expect("bulk insert");
    }
    let r = app.get("/api/machines?page_size=10000").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["count"], 10_000);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 10_000);
    assert_eq!(results[9_999]["hostname"], "node-9999");
    assert_eq!(results[9_999]["mac"], "02:00:00:00:27:0F");
    assert_eq!(results[9_999]["cluster_name"], "big");
    assert_eq!(results[9_999]["boot_profile_name"], "pxe");
    let r = app.get("/api/cluster").await;
    assert_eq!(r.body["results"][0]["machine_count"], 10_000);
    let r = app
        .get(&format!(
            "/api/cluster/{cid}/machines?page=2&page_size=10000"
        ))
        .await;
    assert_eq!(r.body["count"], 10_000);
    assert_eq!(r.body["results"], json!([]));
}

dual_test!(ten_thousand_machines_in_one_page);
