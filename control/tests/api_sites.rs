//! Sites, boot profiles and IP pools over REST, on SQLite and PostgreSQL: CRUD, every validation
//! rule (by field name), conflicts, authorisation, pagination, filters and what deleting a site
//! does to what hangs off it.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use axum::http::{Method, StatusCode};
use ims_control::db::now_ms;
use serde_json::{Value, json};
use support::{Resp, TestApp, assert_problem};

/// The fields named in a problem with `status`.
fn fields(resp: &Resp, status: StatusCode) -> Vec<String> {
    assert_problem(resp, status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

/// The message of `field` in a problem with `status`.
fn message(resp: &Resp, status: StatusCode, field: &str) -> String {
    assert_problem(resp, status)
        .into_iter()
        .find(|(f, _)| f == field)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no error on `{field}`: {}", resp.body))
}

async fn create(app: &TestApp, uri: &str, body: Value) -> Value {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|v| v["id"].as_i64().expect("id"))
        .collect()
}

async fn sites_crud(app: &TestApp) {
    let site = create(
        app,
        "/api/sites",
        json!({"name": "edge-1", "description": "rack 4"}),
    )
    .await;
    let id = site["id"].as_i64().unwrap();
    assert_eq!(site["name"], "edge-1");
    assert_eq!(site["description"], "rack 4");
    assert_eq!(site["subnets"], json!([]));
    assert_eq!(site["boot_profiles"], json!([]));
    assert_eq!(site["cluster_count"], 0);
    assert_eq!(site["worker_count"], 0);
    assert!(site["created_at"].as_str().unwrap().ends_with('Z'));

    // By id, by name (any case), with a trailing slash.
    for uri in [
        format!("/api/sites/{id}"),
        "/api/sites/edge-1".to_owned(),
        "/api/sites/EDGE-1/".to_owned(),
    ] {
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.body, site);
    }

    // PATCH changes only what is given.
    let r = app
        .patch("/api/sites/edge-1", json!({"name": "edge-one"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["name"].as_str(), r.body["description"].as_str()),
        (Some("edge-one"), Some("rack 4"))
    );
    // PUT replaces: the description goes back to empty.
    let r = app
        .put(&format!("/api/sites/{id}"), json!({"name": "edge-one"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["description"], "");
    let r = app
        .put(&format!("/api/sites/{id}"), json!({"description": "x"}))
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["name"]);

    let list = app.get("/api/sites").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["count"], 1);
    assert_eq!(list.body["results"][0]["name"], "edge-one");

    let r = app.delete("/api/sites/edge-one").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    assert_problem(
        &app.get(&format!("/api/sites/{id}")).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &app.delete(&format!("/api/sites/{id}")).await,
        StatusCode::NOT_FOUND,
    );
}
dual_test!(sites_crud);

async fn site_validation_and_conflicts(app: &TestApp) {
    for bad in [
        "",
        "-edge",
        ".edge",
        "edge 1",
        "edge/1",
        "ëdge",
        "12345",
        &"a".repeat(64),
    ] {
        let r = app.post("/api/sites", json!({"name": bad})).await;
        assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["name"], "{bad:?}");
    }
    let r = app.post("/api/sites", json!({})).await;
    assert!(message(&r, StatusCode::BAD_REQUEST, "name").contains("required"));
    let r = app
        .post("/api/sites", json!({"name": 7, "description": ["x"]}))
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["name", "description"]);
    let r = app
        .post("/api/sites", json!({"name": "a", "colour": "red"}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    assert!(
        r.body["detail"].as_str().unwrap().contains("colour"),
        "{}",
        r.body
    );

    create(app, "/api/sites", json!({"name": "1st-floor"})).await;
    create(app, "/api/sites", json!({"name": "edge.b_2"})).await;
    let r = app.post("/api/sites", json!({"name": "1ST-FLOOR"})).await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["name"]);
    let r = app
        .patch("/api/sites/edge.b_2", json!({"name": "1st-floor"}))
        .await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["name"]);
    // Concurrent creations that differ only in case: exactly one wins.
    for round in 0..3 {
        let (r1, r2) = tokio::join!(
            app.post("/api/sites", json!({"name": format!("dup{round}")})),
            app.post("/api/sites", json!({"name": format!("DUP{round}")})),
        );
        let mut statuses = [r1.status, r2.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    }
    // Renaming to itself is no conflict.
    let r = app
        .put("/api/sites/edge.b_2", json!({"name": "edge.b_2"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
dual_test!(site_validation_and_conflicts);

async fn site_auth_and_not_found(app: &TestApp) {
    create(app, "/api/sites", json!({"name": "edge"})).await;
    for (method, uri) in [
        (Method::GET, "/api/sites"),
        (Method::GET, "/api/sites/edge"),
        (Method::POST, "/api/sites"),
        (Method::DELETE, "/api/sites/edge"),
        (Method::GET, "/api/boot-profiles"),
        (Method::POST, "/api/ippools"),
    ] {
        let r = app
            .anonymous(method.clone(), uri, Some(json!({"name": "x"})))
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let r = app.viewer(Method::GET, "/api/sites/edge", None).await;
    assert_eq!(r.status, StatusCode::OK);
    for (method, uri) in [
        (Method::POST, "/api/sites"),
        (Method::PUT, "/api/sites/edge"),
        (Method::PATCH, "/api/sites/edge"),
        (Method::DELETE, "/api/sites/edge"),
        (Method::POST, "/api/boot-profiles"),
        (Method::POST, "/api/ippools"),
    ] {
        let r = app
            .viewer(method.clone(), uri, Some(json!({"name": "x"})))
            .await;
        assert_problem(&r, StatusCode::FORBIDDEN);
    }
    for uri in [
        "/api/sites/nowhere",
        "/api/sites/999",
        "/api/boot-profiles/nothing",
        "/api/ippools/999",
    ] {
        assert_problem(&app.get(uri).await, StatusCode::NOT_FOUND);
        let r = app.patch(uri, json!({"description": "x"})).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
        assert_problem(&app.delete(uri).await, StatusCode::NOT_FOUND);
    }
    assert_problem(&app.get("/api/ippools/abc").await, StatusCode::NOT_FOUND);
}
dual_test!(site_auth_and_not_found);

async fn site_pagination(app: &TestApp) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(
            create(app, "/api/sites", json!({"name": format!("s{i}")})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let r = app.get("/api/sites?page=2&page_size=2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (
            r.body["count"].as_i64(),
            r.body["page"].as_i64(),
            r.body["page_size"].as_i64()
        ),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(ids(&r.body), all[2..4]);
    let r = app.get("/api/sites?page=3&page_size=2").await;
    assert_eq!(ids(&r.body), all[4..]);
    let r = app.get("/api/sites?page=9").await;
    assert_eq!((r.body["count"].as_i64(), ids(&r.body).len()), (Some(5), 0));
    let r = app.get("/api/sites?page=0&page_size=0").await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["page", "page_size"]);
    assert_problem(&app.get("/api/sites?page=x").await, StatusCode::BAD_REQUEST);
}
dual_test!(site_pagination);

/// Inserts a cluster at `site` with SQL (the cluster API is another module's).
async fn insert_cluster(app: &TestApp, name: &str, site: Option<i64>) -> i64 {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO clusters (name, description, status, health, site_id, created_at, updated_at) \
         VALUES ($1, '', 'UNKNOWN', 'UNKNOWN', $2, $3, $3) RETURNING id",
    )
    .bind(name)
    .bind(site)
    .bind(now_ms())
    .fetch_one(app.state.db.pool())
    .await
    .expect("insert cluster");
    id
}

async fn site_delete_keeps_clusters_and_drops_its_config(app: &TestApp) {
    let site = create(app, "/api/sites", json!({"name": "doomed"})).await;
    let other = create(app, "/api/sites", json!({"name": "other"})).await;
    let (sid, oid) = (site["id"].as_i64().unwrap(), other["id"].as_i64().unwrap());
    create(
        app,
        "/api/ippools",
        json!({"site": "doomed", "cidr": "10.1.0.0/24"}),
    )
    .await;
    create(
        app,
        "/api/ippools",
        json!({"site": sid, "cidr": "10.2.0.0/24"}),
    )
    .await;
    let keep_pool = create(
        app,
        "/api/ippools",
        json!({"site": oid, "cidr": "10.1.0.0/24"}),
    )
    .await;
    create(
        app,
        "/api/boot-profiles",
        json!({"name": "p-doomed", "site": "doomed", "bios": "undionly.kpxe"}),
    )
    .await;
    let global = create(
        app,
        "/api/boot-profiles",
        json!({"name": "p-global", "bios": "undionly.kpxe"}),
    )
    .await;
    create(app, "/api/dhcp-config", json!({"site": "doomed"})).await;
    create(app, "/api/tftp-config", json!({"site": "doomed"})).await;
    let cluster = insert_cluster(app, "c1", Some(sid)).await;
    insert_cluster(app, "c2", Some(oid)).await;
    let r = app
        .post(
            "/api/ims-worker/register",
            json!({"worker_id": "w1", "ip_address": "10.1.0.2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    sqlx::query("UPDATE workers SET site_id = $1 WHERE worker_id = 'w1'")
        .bind(sid)
        .execute(app.state.db.pool())
        .await
        .unwrap();

    let r = app.get("/api/sites/doomed").await;
    assert_eq!(r.body["subnets"], json!(["10.1.0.0/24", "10.2.0.0/24"]));
    assert_eq!(r.body["boot_profiles"], json!(["p-doomed"]));
    assert_eq!(
        (
            r.body["cluster_count"].as_i64(),
            r.body["worker_count"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let list = app.get("/api/sites").await;
    assert_eq!(list.body["results"][1]["subnets"], json!(["10.1.0.0/24"]));
    assert_eq!(list.body["results"][1]["cluster_count"], 1);

    assert_eq!(
        app.delete("/api/sites/doomed").await.status,
        StatusCode::NO_CONTENT
    );
    let pools = app.get("/api/ippools").await;
    assert_eq!(ids(&pools.body), [keep_pool["id"].as_i64().unwrap()]);
    let profiles = app.get("/api/boot-profiles").await;
    assert_eq!(ids(&profiles.body), [global["id"].as_i64().unwrap()]);
    assert_eq!(app.get("/api/dhcp-config").await.body["count"], 0);
    assert_eq!(app.get("/api/tftp-config").await.body["count"], 0);
    let (site_of_cluster,): (Option<i64>,) =
        sqlx::query_as("SELECT site_id FROM clusters WHERE id = $1")
            .bind(cluster)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(site_of_cluster, None);
    let w = app.get("/api/workers/w1").await;
    assert_eq!(
        (w.body["site"].clone(), w.body["site_name"].clone()),
        (Value::Null, Value::Null)
    );
    // The OpenAPI description says what goes and what stays.
    let doc = app.get("/api/openapi.json").await;
    let text = doc.body["paths"]["/api/sites/{id}"]["delete"].to_string();
    assert!(
        text.contains("clusters") && text.contains("IP pools"),
        "{text}"
    );
}
dual_test!(site_delete_keeps_clusters_and_drops_its_config);

async fn boot_profiles_crud(app: &TestApp) {
    let site = create(app, "/api/sites", json!({"name": "edge"})).await;
    let sid = site["id"].as_i64().unwrap();
    let global = create(
        app,
        "/api/boot-profiles",
        json!({
            "name": "default", "bios": "ipxe/undionly.kpxe", "uefi_x64": "ipxe/ipxe.efi",
            "http": "http://10.77.0.1:8080/ipxe.efi", "description": "all sites",
        }),
    )
    .await;
    assert_eq!(
        (global["site"].clone(), global["site_name"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(global["uefi_arm64"], Value::Null);
    let local = create(
        app,
        "/api/boot-profiles",
        json!({
            "name": "linux", "site": "edge", "ipxe_script": "http://10.77.0.1:8080/boot.ipxe",
            "kernel": "linux/vmlinuz", "initrd": "http://10.77.0.1:8080/linux/initrd.img",
            "cmdline": "console=ttyS0 ip={ip} hostname={hostname}", "uefi_arm64": "",
        }),
    )
    .await;
    assert_eq!(
        (local["site"].as_i64(), local["site_name"].as_str()),
        (Some(sid), Some("edge"))
    );
    assert_eq!(local["uefi_arm64"], Value::Null, "empty strings are unset");
    let lid = local["id"].as_i64().unwrap();

    assert_eq!(app.get("/api/boot-profiles/linux").await.body, local);
    assert_eq!(
        app.get(&format!("/api/boot-profiles/{lid}")).await.body,
        local
    );
    let r = app.get("/api/boot-profiles?site=edge").await;
    assert_eq!(ids(&r.body), [lid]);
    let r = app.get(&format!("/api/boot-profiles?site={sid}")).await;
    assert_eq!(r.body["count"], 1);
    let r = app.get("/api/boot-profiles?site=nowhere").await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["site"]);
    assert_eq!(app.get("/api/boot-profiles").await.body["count"], 2);

    // PATCH: null clears, absent stays; the site can become global.
    let r = app
        .patch(
            "/api/boot-profiles/linux",
            json!({"cmdline": null, "site": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["cmdline"].clone(), r.body["site"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(r.body["kernel"], "linux/vmlinuz");
    // PATCH is validated as a whole: clearing the kernel leaves an initrd without one.
    let r = app
        .patch("/api/boot-profiles/linux", json!({"kernel": null}))
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["initrd"]);
    // PUT replaces: unspecified boot files are cleared.
    let r = app
        .put(
            &format!("/api/boot-profiles/{lid}"),
            json!({"name": "linux2", "site": sid, "bios": "pxelinux.0"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["name"].as_str(),
            r.body["kernel"].clone(),
            r.body["ipxe_script"].clone()
        ),
        (Some("linux2"), Value::Null, Value::Null)
    );
    assert_eq!(
        app.get("/api/sites/edge").await.body["boot_profiles"],
        json!(["linux2"])
    );

    assert_eq!(
        app.delete("/api/boot-profiles/linux2").await.status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &app.get(&format!("/api/boot-profiles/{lid}")).await,
        StatusCode::NOT_FOUND,
    );
}
dual_test!(boot_profiles_crud);

async fn boot_profile_validation(app: &TestApp) {
    let bad = |field: &str, value: Value| {
        let mut body = json!({"name": "p", "bios": "undionly.kpxe"});
        body[field] = value;
        (field.to_owned(), body)
    };
    let cases = [
        bad("name", json!("-p")),
        bad("site", json!("nowhere")),
        bad("site", json!(999)),
        bad("bios", json!("../../etc/shadow")),
        bad("bios", json!("a\u{0}b")),
        bad("bios", json!("x".repeat(256))),
        bad("uefi_x64", json!("efi/../../x.efi")),
        bad("uefi_arm64", json!(5)),
        bad("http", json!("ipxe.efi")),
        bad("http", json!("ftp://10.0.0.1/ipxe.efi")),
        bad("http_arm64", json!("http:///ipxe.efi")),
        bad("ipxe_script", json!("gopher://10.0.0.1/boot.ipxe")),
        bad("ipxe_script", json!("scripts/../../boot.ipxe")),
        bad("kernel", json!(format!("http://h/{}", "k".repeat(1100)))),
        bad("description", json!("x".repeat(5000))),
    ];
    for (field, body) in cases {
        let r = app.post("/api/boot-profiles", body.clone()).await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            std::slice::from_ref(&field),
            "{body}"
        );
    }
    let with_kernel =
        |cmdline: Value| json!({"name": "p", "kernel": "vmlinuz", "cmdline": cmdline});
    let r = app
        .post(
            "/api/boot-profiles",
            with_kernel(json!("console=ttyS0\nroot=/dev/sda")),
        )
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["cmdline"]);
    let r = app
        .post("/api/boot-profiles", with_kernel(json!("x".repeat(2049))))
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["cmdline"]);
    let r = app
        .post("/api/boot-profiles", with_kernel(json!("x".repeat(2048))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // Nothing to boot: the message lists what may be set.
    let r = app
        .post(
            "/api/boot-profiles",
            json!({"name": "empty", "http_arm64": "http://h/x.efi"}),
        )
        .await;
    let m = message(&r, StatusCode::BAD_REQUEST, "bios");
    assert!(
        m.contains("at least one of bios, uefi_x64, uefi_arm64, http, ipxe_script or kernel"),
        "{m}"
    );
    let r = app
        .post(
            "/api/boot-profiles",
            json!({"name": "q", "bios": "x", "initrd": "initrd.img"}),
        )
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["initrd"]);
    // All invalid fields at once.
    let r = app
        .post(
            "/api/boot-profiles",
            json!({"name": "", "site": [], "bios": "..", "http": "x"}),
        )
        .await;
    assert_eq!(
        fields(&r, StatusCode::BAD_REQUEST),
        ["name", "site", "bios", "http"]
    );
    // Accepted forms: absolute-looking paths, tftp:// scripts, https.
    let r = app
        .post(
            "/api/boot-profiles",
            json!({
                "name": "ok", "bios": "/pxelinux.0", "ipxe_script": "tftp://10.0.0.1/boot.ipxe",
                "http": "HTTPS://boot.example/ipxe.efi",
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post("/api/boot-profiles", json!({"name": "OK", "bios": "x"}))
        .await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["name"]);
    let r = app
        .patch("/api/boot-profiles/p", json!({"name": "ok"}))
        .await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["name"]);
}
dual_test!(boot_profile_validation);

async fn ippools_crud(app: &TestApp) {
    create(app, "/api/sites", json!({"name": "edge"})).await;
    let pool = create(
        app,
        "/api/ippools",
        json!({
            "site": "edge", "cidr": "10.77.0.0/24", "gateway": "10.77.0.1",
            "range_start": "10.77.0.100", "range_end": "10.77.0.199",
            "dns": ["10.77.0.53", "192.0.2.53"], "lease_time": 600, "description": "prov",
        }),
    )
    .await;
    let id = pool["id"].as_i64().unwrap();
    assert_eq!(pool["site_name"], "edge");
    assert_eq!(pool["cidr"], "10.77.0.0/24");
    assert_eq!(pool["dns"], json!(["10.77.0.53", "192.0.2.53"]));
    assert_eq!(
        (pool["lease_time"].as_i64(), pool["size"].as_i64()),
        (Some(600), Some(100))
    );
    let global = create(
        app,
        "/api/ippools",
        json!({"cidr": "192.168.0.0/16", "gateway": "192.168.0.1"}),
    )
    .await;
    assert_eq!(
        (global["site"].clone(), global["dns"].clone()),
        (Value::Null, json!([]))
    );
    assert_eq!(
        (global["lease_time"].as_i64(), global["size"].as_i64()),
        (Some(3600), Some(65_533))
    );

    assert_eq!(app.get(&format!("/api/ippools/{id}")).await.body, pool);
    let r = app.get("/api/ippools?site=edge").await;
    assert_eq!(ids(&r.body), [id]);
    assert_eq!(
        app.get("/api/ippools?page_size=1&page=2").await.body["results"][0]["id"],
        global["id"]
    );
    assert_eq!(
        app.get("/api/sites/edge").await.body["subnets"],
        json!(["10.77.0.0/24"])
    );

    // PATCH: absent fields stay, null clears; the merged pool is validated.
    let r = app
        .patch(
            &format!("/api/ippools/{id}"),
            json!({"range_start": null, "range_end": null, "dns": ["1.1.1.1"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["range_start"].clone(), r.body["size"].as_i64()),
        (Value::Null, Some(253))
    );
    assert_eq!(
        (r.body["gateway"].as_str(), r.body["dns"].clone()),
        (Some("10.77.0.1"), json!(["1.1.1.1"]))
    );
    let r = app
        .patch(
            &format!("/api/ippools/{id}"),
            json!({"cidr": "10.78.0.0/24"}),
        )
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["gateway"]);
    // PUT replaces: unspecified fields reset.
    let r = app
        .put(
            &format!("/api/ippools/{id}"),
            json!({"site": "edge", "cidr": "10.78.0.0/23"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["gateway"].clone(),
            r.body["lease_time"].as_i64(),
            r.body["size"].as_i64()
        ),
        (Value::Null, Some(3600), Some(510))
    );

    assert_eq!(
        app.delete(&format!("/api/ippools/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &app.get(&format!("/api/ippools/{id}")).await,
        StatusCode::NOT_FOUND,
    );
}
dual_test!(ippools_crud);

async fn ippool_validation(app: &TestApp) {
    let bad = |field: &str, value: Value| {
        let mut body = json!({"cidr": "10.0.0.0/24"});
        body[field] = value;
        (field.to_owned(), body)
    };
    let cases = [
        bad("cidr", Value::Null),
        bad("cidr", json!("10.0.0.0")),
        bad("cidr", json!("10.0.0.0/33")),
        bad("cidr", json!("2001:db8::/64")),
        bad("cidr", json!("10.0.0.0/31")),
        bad("gateway", json!("10.0.1.1")),
        bad("gateway", json!("10.0.0.0")),
        bad("gateway", json!("10.0.0.255")),
        bad("gateway", json!("gateway")),
        (
            "range_start".to_owned(),
            json!({"cidr": "10.0.0.0/24", "range_end": "10.0.0.20"}),
        ),
        (
            "range_end".to_owned(),
            json!({"cidr": "10.0.0.0/24", "range_start": "10.0.0.20"}),
        ),
        bad("dns", json!("8.8.8.8")),
        bad("dns", json!(["8.8.8.8", "dns.google"])),
        bad("dns", json!(vec!["1.1.1.1"; 9])),
        bad("lease_time", json!(59)),
        bad("lease_time", json!(31_536_001)),
        bad("lease_time", json!("long")),
        bad("site", json!("nowhere")),
    ];
    for (field, body) in cases {
        let r = app.post("/api/ippools", body.clone()).await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            std::slice::from_ref(&field),
            "{body}"
        );
    }
    let r = app
        .post("/api/ippools", json!({"cidr": "10.0.0.77/24"}))
        .await;
    let m = message(&r, StatusCode::BAD_REQUEST, "cidr");
    assert!(m.contains("10.0.0.0/24"), "the corrected network: {m}");
    let range = |start: &str, end: &str| json!({"cidr": "10.0.0.0/24", "range_start": start, "range_end": end});
    let r = app
        .post("/api/ippools", range("10.0.0.50", "10.0.0.10"))
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["range_end"]);
    let r = app
        .post("/api/ippools", range("10.0.1.10", "10.0.0.255"))
        .await;
    assert_eq!(
        fields(&r, StatusCode::BAD_REQUEST),
        ["range_start", "range_end"]
    );
    let r = app
        .post("/api/ippools", range("10.0.0.10", "10.0.0.10"))
        .await;
    assert_eq!(r.body["size"], 1, "{}", r.body);
    let r = app
        .post(
            "/api/ippools",
            json!({"cidr": "10.1.0.0/24", "lease_time": "120"}),
        )
        .await;
    assert_eq!(r.body["lease_time"], 120, "{}", r.body);
    let r = app
        .post(
            "/api/ippools",
            json!({"cidr": "x", "gateway": "y", "lease_time": 1, "extra": 1}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/api/ippools",
            json!({"cidr": "x", "gateway": "y", "lease_time": 1}),
        )
        .await;
    assert_eq!(
        fields(&r, StatusCode::BAD_REQUEST),
        ["cidr", "gateway", "lease_time"]
    );
}
dual_test!(ippool_validation);

async fn ippool_overlaps(app: &TestApp) {
    create(app, "/api/sites", json!({"name": "a"})).await;
    create(app, "/api/sites", json!({"name": "b"})).await;
    let first = create(
        app,
        "/api/ippools",
        json!({"site": "a", "cidr": "10.0.0.0/16"}),
    )
    .await;
    for cidr in ["10.0.5.0/24", "10.0.0.0/16", "10.0.0.0/8"] {
        let r = app
            .post("/api/ippools", json!({"site": "a", "cidr": cidr}))
            .await;
        let m = message(&r, StatusCode::CONFLICT, "cidr");
        assert!(m.contains("10.0.0.0/16"), "{m}");
    }
    // Another site, or the global pools, may use the same network.
    create(
        app,
        "/api/ippools",
        json!({"site": "b", "cidr": "10.0.5.0/24"}),
    )
    .await;
    create(app, "/api/ippools", json!({"cidr": "10.0.0.0/16"})).await;
    let r = app
        .post("/api/ippools", json!({"cidr": "10.0.128.0/17"}))
        .await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["cidr"]);
    // Moving or growing a pool into another is a conflict too; changing itself is not.
    let second = create(
        app,
        "/api/ippools",
        json!({"site": "a", "cidr": "10.1.0.0/24"}),
    )
    .await;
    let uri = format!("/api/ippools/{}", second["id"]);
    let r = app.patch(&uri, json!({"cidr": "10.0.0.0/15"})).await;
    assert_eq!(fields(&r, StatusCode::CONFLICT), ["cidr"]);
    let r = app
        .patch(
            &format!("/api/ippools/{}", first["id"]),
            json!({"cidr": "10.0.0.0/17"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.patch(&uri, json!({"site": "b"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.get("/api/ippools?site=a").await.body["count"], 1);

    // Concurrent writers: the overlap check and the insert are one serialised step per site.
    for round in 0..5 {
        let (x, y) = (
            format!("10.{}.0.0/24", 50 + round),
            format!("10.{}.0.0/25", 50 + round),
        );
        let (r1, r2) = tokio::join!(
            app.post("/api/ippools", json!({"site": "b", "cidr": x})),
            app.post("/api/ippools", json!({"site": "b", "cidr": y})),
        );
        let mut statuses = [r1.status, r2.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "{} {}",
            r1.body,
            r2.body
        );
    }
}
dual_test!(ippool_overlaps);

/// Every site-side operation is documented, with its methods, bearer security and 401.
async fn openapi_documents_the_site_side_routes(app: &TestApp) {
    let doc = app.get("/api/openapi.json").await.body;
    let crud = ["get", "put", "patch", "delete"];
    let expected: [(&str, &[&str]); 14] = [
        ("/api/sites", &["get", "post"]),
        ("/api/sites/{id}", &crud),
        ("/api/boot-profiles", &["get", "post"]),
        ("/api/boot-profiles/{id}", &crud),
        ("/api/ippools", &["get", "post"]),
        ("/api/ippools/{id}", &crud),
        ("/api/dhcp-config", &["get", "post"]),
        ("/api/dhcp-config/{id}", &crud),
        ("/api/tftp-config", &["get", "post"]),
        ("/api/tftp-config/{id}", &crud),
        ("/api/workers", &["get"]),
        ("/api/workers/{id}", &["get"]),
        ("/api/leases", &["get"]),
        ("/api/leases/{id}", &["get"]),
    ];
    for (path, methods) in expected {
        let item = doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path} not documented"));
        let documented: Vec<&str> = item
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "parameters")
            .collect();
        let mut want = methods.to_vec();
        want.sort_unstable();
        let mut got = documented.clone();
        got.sort_unstable();
        assert_eq!(got, want, "{path}");
        for m in methods {
            assert_eq!(item[*m]["security"], json!([{"bearer": []}]), "{m} {path}");
            assert!(item[*m]["responses"]["401"].is_object(), "{m} {path}");
        }
    }
    for legacy in ["register", "heartbeat", "report_lease", "report_error"] {
        let path = format!("/api/ims-worker/{legacy}");
        assert!(doc["paths"][&path]["post"].is_object(), "{path}");
    }
}
dual_test!(openapi_documents_the_site_side_routes);
