//! `/api/cluster…` on SQLite and PostgreSQL: CRUD, validation naming every field, conflicts,
//! roles, pagination and filters, `add_machine`, in-place edits through
//! `/api/cluster/{cid}/machines/{mid}`, and deletion cascading to machines.
// Helpers called by the dual-backend tests unwrap like tests do.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestApp, assert_problem};

async fn insert_site(app: &TestApp, name: &str) -> i64 {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO sites (name, description, created_at, updated_at) VALUES ($1,'',0,0) \
         RETURNING id",
    )
    .bind(name)
    .fetch_one(app.state.db.pool())
    .await
    .expect("insert site");
    id
}

async fn create_cluster(app: &TestApp, body: Value) -> i64 {
    let r = app.post("/api/cluster", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    r.body["id"].as_i64().expect("id")
}

async fn add_machine(app: &TestApp, cid: i64, hostname: &str, mac: &str) -> Value {
    let r = app
        .post(
            &format!("/api/cluster/{cid}/add_machine"),
            json!({"hostname": hostname, "mac": mac}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    r.body
}

fn fields(errors: &[(String, String)]) -> Vec<&str> {
    let mut f: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    f.sort_unstable();
    f
}

async fn cluster_crud(app: &TestApp) {
    let lab = insert_site(app, "lab").await;
    let r = app.post("/api/cluster", json!({"name": "  alpha "})).await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    let c = r.body.clone();
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["name"], "alpha");
    assert_eq!(c["description"], "");
    assert_eq!(c["status"], "UNKNOWN");
    assert_eq!(c["health"], "UNKNOWN");
    assert_eq!(c["site"], Value::Null);
    assert_eq!(c["site_name"], Value::Null);
    assert_eq!(c["machine_count"], 0);
    assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.get(&format!("/api/cluster/{id}")).await.body, c);

    // PUT replaces; the site by name.
    let r = app
        .put(
            &format!("/api/cluster/{id}"),
            json!({"name": "alpha2", "status": "operational", "health": "Healthy",
                   "description": "rack 4", "site": "LAB"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["name"], "alpha2");
    assert_eq!(r.body["status"], "OPERATIONAL");
    assert_eq!(r.body["health"], "HEALTHY");
    assert_eq!(r.body["site"], lab);
    assert_eq!(r.body["site_name"], "lab");
    assert_eq!(r.body["created_at"], c["created_at"]);

    // PATCH changes only what it names; null clears the site.
    let r = app
        .patch(&format!("/api/cluster/{id}"), json!({"site": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["site"], Value::Null);
    assert_eq!(r.body["status"], "OPERATIONAL");
    assert_eq!(r.body["description"], "rack 4");
    let r = app
        .patch(&format!("/api/cluster/{id}"), json!({"site": lab}))
        .await;
    assert_eq!(r.body["site_name"], "lab", "body: {}", r.body);

    // PUT resets the fields left out.
    let r = app
        .put(&format!("/api/cluster/{id}"), json!({"name": "alpha2"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["status"], "UNKNOWN");
    assert_eq!(r.body["description"], "");
    assert_eq!(r.body["site"], Value::Null);

    let r = app.delete(&format!("/api/cluster/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    assert_problem(
        &app.get(&format!("/api/cluster/{id}")).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &app.delete(&format!("/api/cluster/{id}")).await,
        StatusCode::NOT_FOUND,
    );
}

dual_test!(cluster_crud);

async fn cluster_validation_and_conflicts(app: &TestApp) {
    let r = app.post("/api/cluster", json!({})).await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["name"]
    );
    let r = app
        .post(
            "/api/cluster",
            json!({"name": " ", "status": "BOGUS", "health": 5, "site": "nowhere",
                   "description": 7}),
        )
        .await;
    let errors = assert_problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&errors),
        ["description", "health", "name", "site", "status"]
    );
    let status_msg = &errors.iter().find(|(f, _)| f == "status").unwrap().1;
    assert!(status_msg.contains("OPERATIONAL"), "{status_msg}");
    let r = app
        .post(
            "/api/cluster",
            json!({"name": "x".repeat(101), "site": 999}),
        )
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["name", "site"]
    );
    let r = app
        .post("/api/cluster", json!({"name": "ok", "colour": "red"}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app.post("/api/cluster", json!({"name": null})).await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["name"]
    );

    // Names are unique, ignoring case; 100 characters is fine.
    let a = create_cluster(app, json!({"name": "alpha"})).await;
    create_cluster(app, json!({"name": "y".repeat(100)})).await;
    for name in ["alpha", "ALPHA"] {
        let r = app.post("/api/cluster", json!({"name": name})).await;
        assert_eq!(fields(&assert_problem(&r, StatusCode::CONFLICT)), ["name"]);
    }
    let b = create_cluster(app, json!({"name": "beta"})).await;
    let r = app
        .patch(&format!("/api/cluster/{b}"), json!({"name": "Alpha"}))
        .await;
    assert_eq!(fields(&assert_problem(&r, StatusCode::CONFLICT)), ["name"]);
    // Renaming to its own name in another case is fine.
    let r = app
        .patch(&format!("/api/cluster/{a}"), json!({"name": "Alpha"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);

    // 404s: unknown id, non-numeric id.
    for (method, uri) in [
        (Method::GET, "/api/cluster/9999"),
        (Method::PUT, "/api/cluster/9999"),
        (Method::PATCH, "/api/cluster/9999"),
        (Method::GET, "/api/cluster/abc"),
    ] {
        let body = (method != Method::GET).then(|| json!({"name": "zz"}));
        let r = app.call(method, uri, Some(&app.admin_token), body).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
}

dual_test!(cluster_validation_and_conflicts);

async fn cluster_roles(app: &TestApp) {
    let id = create_cluster(app, json!({"name": "alpha"})).await;
    let m = add_machine(app, id, "node-1", "52:54:00:00:00:01").await;
    let mid = m["id"].as_i64().unwrap();
    let reads = [
        "/api/cluster".to_owned(),
        format!("/api/cluster/{id}"),
        format!("/api/cluster/{id}/machines"),
        format!("/api/cluster/{id}/machines/{mid}"),
    ];
    for uri in &reads {
        let r = app.viewer(Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        let r = app.anonymous(Method::GET, uri, None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let body = json!({"name": "beta", "hostname": "node-2", "mac": "52:54:00:00:00:02"});
    let writes = [
        (Method::POST, "/api/cluster".to_owned()),
        (Method::PUT, format!("/api/cluster/{id}")),
        (Method::PATCH, format!("/api/cluster/{id}")),
        (Method::DELETE, format!("/api/cluster/{id}")),
        (Method::POST, format!("/api/cluster/{id}/add_machine")),
        (Method::PUT, format!("/api/cluster/{id}/machines/{mid}")),
        (Method::PATCH, format!("/api/cluster/{id}/machines/{mid}")),
        (Method::DELETE, format!("/api/cluster/{id}/machines/{mid}")),
    ];
    for (method, uri) in &writes {
        let b = (method != Method::DELETE).then(|| body.clone());
        let r = app.viewer(method.clone(), uri, b.clone()).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
        let r = app.anonymous(method.clone(), uri, b).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    // Nothing changed.
    let r = app.get(&format!("/api/cluster/{id}")).await;
    assert_eq!(r.body["name"], "alpha");
    assert_eq!(r.body["machine_count"], 1);
}

dual_test!(cluster_roles);

async fn cluster_list_pagination_and_filters(app: &TestApp) {
    let lab = insert_site(app, "lab").await;
    insert_site(app, "empty").await;
    for i in 1..=5 {
        let mut body = json!({"name": format!("c{i}")});
        if i <= 2 {
            body["site"] = json!("lab");
            body["status"] = json!("DEGRADED");
        }
        if i == 5 {
            body["health"] = json!("critical");
        }
        create_cluster(app, body).await;
    }
    let r = app.get("/api/cluster?page_size=2").await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["count"], 5);
    assert_eq!(r.body["page"], 1);
    assert_eq!(r.body["page_size"], 2);
    let names: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    let r = app.get("/api/cluster?page=3&page_size=2").await;
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["results"][0]["name"], "c5");
    let r = app.get("/api/cluster?page=4&page_size=2").await;
    assert_eq!(r.body["count"], 5);
    assert_eq!(r.body["results"], json!([]));
    let r = app.get("/api/cluster").await;
    assert_eq!(r.body["page_size"], 100);

    for (query, field) in [
        ("page=0", "page"),
        ("page_size=0", "page_size"),
        ("page_size=10001", "page_size"),
        ("status=nope", "status"),
        ("health=nope", "health"),
    ] {
        let r = app.get(&format!("/api/cluster?{query}")).await;
        assert_eq!(
            fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
            [field],
            "{query}"
        );
    }
    assert_problem(
        &app.get("/api/cluster?page_size=abc").await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        app.get("/api/cluster?page_size=10000").await.status,
        StatusCode::OK
    );

    for (q, n) in [
        ("site=lab".to_owned(), 2),
        ("site=LAB".to_owned(), 2),
        (format!("site={lab}"), 2),
        ("site=empty".to_owned(), 0),
        ("site=nowhere".to_owned(), 0),
        ("status=degraded".to_owned(), 2),
        ("status=DEGRADED&site=lab".to_owned(), 2),
        ("status=OPERATIONAL".to_owned(), 0),
        ("health=CRITICAL".to_owned(), 1),
        ("name=C3".to_owned(), 1),
        ("name=c3&status=degraded".to_owned(), 0),
    ] {
        let r = app.get(&format!("/api/cluster?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        assert_eq!(r.body["count"], n, "{q}: {}", r.body);
        assert_eq!(
            r.body["results"].as_array().unwrap().len(),
            n as usize,
            "{q}"
        );
    }
    let r = app.get("/api/cluster?site=lab").await;
    assert_eq!(r.body["results"][0]["site_name"], "lab");

    // machine_count per cluster in one listing.
    let ids: Vec<i64> = app.get("/api/cluster").await.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    for n in 0..3 {
        add_machine(
            app,
            ids[0],
            &format!("a{n}"),
            &format!("02:00:00:00:01:0{n}"),
        )
        .await;
    }
    add_machine(app, ids[2], "b0", "02:00:00:00:02:00").await;
    let counts: Vec<i64> = app.get("/api/cluster").await.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["machine_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 0, 1, 0, 0]);
}

dual_test!(cluster_list_pagination_and_filters);

async fn add_machine_and_edit_in_place(app: &TestApp) {
    let a = create_cluster(app, json!({"name": "alpha"})).await;
    let b = create_cluster(app, json!({"name": "beta"})).await;
    let m = add_machine(app, a, "node-1", "52-54-00-aa-bb-01").await;
    let mid = m["id"].as_i64().unwrap();
    assert_eq!(m["cluster"], a);
    assert_eq!(m["cluster_name"], "alpha");
    assert_eq!(m["mac"], "52:54:00:AA:BB:01");
    assert_eq!(m["role"], "WORKER");
    assert_eq!(m["netboot"], true);

    // A `cluster` in add_machine's body must be the URL's.
    let r = app
        .post(
            &format!("/api/cluster/{a}/add_machine"),
            json!({"hostname": "n", "mac": "52:54:00:aa:bb:09", "cluster": b}),
        )
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["cluster"]
    );
    let r = app
        .post(
            &format!("/api/cluster/{a}/add_machine"),
            json!({"hostname": "n", "mac": "52:54:00:aa:bb:09", "cluster": "ALPHA"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    let other = r.body["id"].as_i64().unwrap();
    assert_eq!(
        app.delete(&format!("/api/cluster/{a}/machines/{other}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &app.post(
            "/api/cluster/9999/add_machine",
            json!({"hostname": "n", "mac": "52:54:00:aa:bb:0a"}),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let r = app
        .post(&format!("/api/cluster/{a}/add_machine"), json!({}))
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["hostname", "mac"]
    );

    // PUT through the cluster route edits the same machine: no duplicate.
    let uri = format!("/api/cluster/{a}/machines/{mid}");
    let r = app
        .put(
            &uri,
            json!({"hostname": "node-1-renamed", "mac": "52:54:00:aa:bb:01", "ip": "10.0.0.11",
                   "role": "MASTER", "cpu_cores": 16}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["id"], mid);
    assert_eq!(r.body["cluster"], a);
    assert_eq!(r.body["hostname"], "node-1-renamed");
    assert_eq!(r.body["created_at"], m["created_at"]);
    let r = app.patch(&uri, json!({"status": "deploying"})).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["id"], mid);
    assert_eq!(r.body["status"], "DEPLOYING");
    assert_eq!(r.body["role"], "MASTER");
    assert_eq!(r.body["ip"], "10.0.0.11");
    assert_eq!(app.get(&uri).await.body, r.body);
    let r = app.get(&format!("/api/cluster/{a}/machines")).await;
    assert_eq!(r.body["count"], 1, "body: {}", r.body);
    assert_eq!(r.body["results"][0]["id"], mid);
    assert_eq!(app.get("/api/machines").await.body["count"], 1);
    assert_eq!(
        app.get(&format!("/api/cluster/{a}")).await.body["machine_count"],
        1
    );

    // The machine is not in cluster b, nor is there a machine 9999.
    for uri in [
        format!("/api/cluster/{b}/machines/{mid}"),
        format!("/api/cluster/{a}/machines/9999"),
        format!("/api/cluster/9999/machines/{mid}"),
    ] {
        assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND);
        assert_problem(
            &app.patch(&uri, json!({"hostname": "x"})).await,
            StatusCode::NOT_FOUND,
        );
        assert_problem(&app.delete(&uri).await, StatusCode::NOT_FOUND);
    }
    assert_problem(
        &app.get("/api/cluster/9999/machines").await,
        StatusCode::NOT_FOUND,
    );

    // A `cluster` field moves it, still in place.
    let r = app.patch(&uri, json!({"cluster": "beta"})).await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["id"], mid);
    assert_eq!(r.body["cluster"], b);
    assert_eq!(r.body["cluster_name"], "beta");
    assert_problem(&app.get(&uri).await, StatusCode::NOT_FOUND);
    let moved = format!("/api/cluster/{b}/machines/{mid}");
    assert_eq!(app.get(&moved).await.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/api/cluster/{a}")).await.body["machine_count"],
        0
    );
    assert_eq!(
        app.get(&format!("/api/cluster/{b}")).await.body["machine_count"],
        1
    );
    let r = app.patch(&moved, json!({"cluster": 9999})).await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["cluster"]
    );

    // Filters of the cluster's machine list.
    add_machine(app, b, "node-2", "52:54:00:aa:bb:02").await;
    for (q, n) in [
        ("", 2),
        ("?role=master", 1),
        ("?status=DEPLOYING", 1),
        ("?mac=525400aabb02", 1),
        ("?hostname=NODE-2", 1),
        ("?ip=10.0.0.11", 1),
        ("?page_size=1", 2),
    ] {
        let r = app.get(&format!("/api/cluster/{b}/machines{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        assert_eq!(r.body["count"], n, "{q}: {}", r.body);
    }
    let r = app
        .get(&format!("/api/cluster/{b}/machines?role=boss"))
        .await;
    assert_eq!(
        fields(&assert_problem(&r, StatusCode::BAD_REQUEST)),
        ["role"]
    );

    let r = app.delete(&moved).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &app.get(&format!("/api/machines/{mid}")).await,
        StatusCode::NOT_FOUND,
    );
}

dual_test!(add_machine_and_edit_in_place);

async fn cluster_delete_cascades(app: &TestApp) {
    let a = create_cluster(app, json!({"name": "alpha"})).await;
    let b = create_cluster(app, json!({"name": "beta"})).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let m = add_machine(app, a, &format!("a{n}"), &format!("02:00:00:00:0a:0{n}")).await;
        ids.push(m["id"].as_i64().unwrap());
    }
    let keep = add_machine(app, b, "b0", "02:00:00:00:0b:00").await;
    let r = app
        .put(
            &format!("/api/machines/{}/metrics", ids[0]),
            json!({"cpu_usage": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);

    let r = app.delete(&format!("/api/cluster/{a}/")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "body: {}", r.body);
    for id in &ids {
        assert_problem(
            &app.get(&format!("/api/machines/{id}")).await,
            StatusCode::NOT_FOUND,
        );
    }
    let r = app.get("/api/machines").await;
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["results"][0]["id"], keep["id"]);
    let (metrics,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM machine_metrics")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(metrics, 0);
    assert_problem(
        &app.get(&format!("/api/cluster/{a}/machines")).await,
        StatusCode::NOT_FOUND,
    );
}

dual_test!(cluster_delete_cascades);

async fn trailing_slash_optional(app: &TestApp) {
    let r = app.post("/api/cluster/", json!({"name": "alpha"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    for uri in [
        "/api/cluster".to_owned(),
        "/api/cluster/".to_owned(),
        format!("/api/cluster/{id}"),
        format!("/api/cluster/{id}/"),
        format!("/api/cluster/{id}/machines/"),
    ] {
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    }
    let r = app
        .post(
            &format!("/api/cluster/{id}/add_machine/"),
            json!({"hostname": "n1", "mac": "02:00:00:00:00:01"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "body: {}", r.body);
    let mid = r.body["id"].as_i64().unwrap();
    let r = app
        .patch(
            &format!("/api/cluster/{id}/machines/{mid}/"),
            json!({"hostname": "n2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
    assert_eq!(r.body["hostname"], "n2");
    let r = app
        .call(
            Method::POST,
            &format!("/api/cluster/{id}"),
            Some(&app.admin_token),
            Some(json!({})),
        )
        .await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);
}

dual_test!(trailing_slash_optional);

async fn documented_in_openapi(app: &TestApp) {
    let doc = app.get("/api/openapi.json").await.body;
    for (path, methods) in [
        ("/api/cluster", &["get", "post"][..]),
        ("/api/cluster/{id}", &["get", "put", "patch", "delete"][..]),
        ("/api/cluster/{id}/add_machine", &["post"][..]),
        ("/api/cluster/{cid}/machines", &["get"][..]),
        (
            "/api/cluster/{cid}/machines/{mid}",
            &["get", "put", "patch", "delete"][..],
        ),
        ("/api/machines", &["get", "post"][..]),
        ("/api/machines/{id}", &["get", "put", "patch", "delete"][..]),
        ("/api/machines/{id}/metrics", &["get", "put"][..]),
        ("/api/machines/{id}/events", &["get"][..]),
    ] {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(op.is_object(), "{m} {path} is not documented");
            assert!(
                op["security"].is_array(),
                "{m} {path} does not say it needs a token"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    for s in ["ClusterView", "MachineView", "MetricsView", "EventView"] {
        assert!(schemas[s].is_object(), "schema {s} missing");
    }
}

dual_test!(documented_in_openapi);
