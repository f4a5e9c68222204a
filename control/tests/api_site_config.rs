//! Per-site DHCP and TFTP configs over REST, on SQLite and PostgreSQL: defaults, CRUD, every
//! validation rule (by field name), one config per site (409 on `site`), authorisation,
//! pagination and the `site` filter.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Resp, TestApp, assert_problem};

fn fields(resp: &Resp, status: StatusCode) -> Vec<String> {
    assert_problem(resp, status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

async fn create(app: &TestApp, uri: &str, body: Value) -> Value {
    let r = app.post(uri, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Two sites, `a` and `b`; returns their ids.
async fn two_sites(app: &TestApp) -> (i64, i64) {
    let a = create(app, "/api/sites", json!({"name": "a"})).await;
    let b = create(app, "/api/sites", json!({"name": "b"})).await;
    (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap())
}

async fn dhcp_config_crud(app: &TestApp) {
    let (a, b) = two_sites(app).await;
    let c = create(app, "/api/dhcp-config", json!({"site": "a"})).await;
    let id = c["id"].as_i64().unwrap();
    let defaults = json!({
        "site": a, "site_name": "a", "enabled": true, "mode": "server",
        "bind_address": "0.0.0.0", "bind_interface": "", "tftp_ip": null, "tftp_port": 69,
        "lease_time": 3600, "allow_unknown": false,
    });
    for (k, v) in defaults.as_object().unwrap() {
        assert_eq!(&c[k], v, "{k}");
    }
    assert!(c["created_at"].is_string() && c["updated_at"].is_string());

    let full = json!({
        "site": b, "enabled": false, "mode": "PROXY", "bind_address": "10.0.0.1",
        "bind_interface": "enp0s31f6", "tftp_ip": "10.0.0.2", "tftp_port": "6969",
        "lease_time": 600, "allow_unknown": true,
    });
    let d = create(app, "/api/dhcp-config", full).await;
    assert_eq!(
        (
            d["mode"].as_str(),
            d["tftp_port"].as_i64(),
            d["site_name"].as_str()
        ),
        (Some("proxy"), Some(6969), Some("b"))
    );
    assert_eq!(
        (d["enabled"].as_bool(), d["allow_unknown"].as_bool()),
        (Some(false), Some(true))
    );

    assert_eq!(app.get(&format!("/api/dhcp-config/{id}")).await.body, c);
    let r = app.get("/api/dhcp-config?site=b").await;
    assert_eq!(
        (r.body["count"].as_i64(), r.body["results"][0]["id"].clone()),
        (Some(1), d["id"].clone())
    );
    let r = app.get(&format!("/api/dhcp-config?site={a}")).await;
    assert_eq!(r.body["results"][0]["id"], id);
    let r = app.get("/api/dhcp-config?page=2&page_size=1").await;
    assert_eq!(
        (r.body["count"].as_i64(), r.body["results"][0]["id"].clone()),
        (Some(2), d["id"].clone())
    );

    // PATCH changes what is given; PUT resets the rest to defaults.
    let r = app
        .patch(
            &format!("/api/dhcp-config/{id}"),
            json!({"mode": "proxy", "tftp_ip": "10.9.9.9"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["mode"].as_str(),
            r.body["tftp_ip"].as_str(),
            r.body["site"].as_i64()
        ),
        (Some("proxy"), Some("10.9.9.9"), Some(a))
    );
    let r = app
        .patch(&format!("/api/dhcp-config/{id}"), json!({"tftp_ip": null}))
        .await;
    assert_eq!(r.body["tftp_ip"], Value::Null);
    let r = app
        .put(
            &format!("/api/dhcp-config/{id}"),
            json!({"site": "a", "lease_time": 120}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["mode"].as_str(), r.body["lease_time"].as_i64()),
        (Some("server"), Some(120))
    );
    let r = app
        .put(
            &format!("/api/dhcp-config/{id}"),
            json!({"lease_time": 120}),
        )
        .await;
    assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["site"]);

    assert_eq!(
        app.delete(&format!("/api/dhcp-config/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &app.get(&format!("/api/dhcp-config/{id}")).await,
        StatusCode::NOT_FOUND,
    );
    // The site is free again.
    create(app, "/api/dhcp-config", json!({"site": a})).await;
}
dual_test!(dhcp_config_crud);

async fn dhcp_config_validation(app: &TestApp) {
    two_sites(app).await;
    let bad = |field: &str, value: Value| {
        let mut body = json!({"site": "a"});
        body[field] = value;
        (field.to_owned(), body)
    };
    let cases = [
        bad("site", Value::Null),
        bad("site", json!("nowhere")),
        bad("site", json!(true)),
        bad("enabled", json!("yes")),
        bad("mode", json!("relay")),
        bad("mode", json!(1)),
        bad("bind_address", json!("10.0.0.256")),
        bad("bind_address", json!("::1")),
        bad("bind_interface", json!("a-very-long-name")),
        bad("bind_interface", json!("eth0/1")),
        bad("bind_interface", json!("eth0:1")),
        bad("bind_interface", json!("eth 0")),
        bad("tftp_ip", json!("tftp.example")),
        bad("tftp_port", json!(0)),
        bad("tftp_port", json!(65_536)),
        bad("lease_time", json!(59)),
        bad("lease_time", json!(31_536_001)),
        bad("allow_unknown", json!(1)),
    ];
    for (field, body) in cases {
        let r = app.post("/api/dhcp-config", body.clone()).await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            std::slice::from_ref(&field),
            "{body}"
        );
    }
    let r = app
        .post("/api/dhcp-config", json!({"site": "a", "mode": "relay"}))
        .await;
    let errors = assert_problem(&r, StatusCode::BAD_REQUEST);
    assert!(errors[0].1.contains("server, proxy"), "{errors:?}");
    let r = app
        .post(
            "/api/dhcp-config",
            json!({"mode": "x", "tftp_port": -1, "bind_interface": "a/b"}),
        )
        .await;
    assert_eq!(
        fields(&r, StatusCode::BAD_REQUEST),
        ["site", "bind_interface", "mode", "tftp_port"]
    );
    let r = app
        .post("/api/dhcp-config", json!({"site": "a", "lease": 60}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/api/dhcp-config",
            json!({"site": "a", "bind_interface": "br-prov.100"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
dual_test!(dhcp_config_validation);

async fn one_config_per_site(app: &TestApp) {
    let (a, _) = two_sites(app).await;
    for kind in ["dhcp-config", "tftp-config"] {
        let uri = format!("/api/{kind}");
        let first = create(app, &uri, json!({"site": "a"})).await;
        let r = app.post(&uri, json!({"site": a})).await;
        let errors = assert_problem(&r, StatusCode::CONFLICT);
        assert_eq!(errors[0].0, "site", "{kind}");
        assert!(
            errors[0]
                .1
                .contains(&format!("/api/{kind}/{}", first["id"])),
            "{errors:?}"
        );
        let second = create(app, &uri, json!({"site": "b"})).await;
        let r = app
            .patch(&format!("{uri}/{}", second["id"]), json!({"site": "a"}))
            .await;
        assert_eq!(fields(&r, StatusCode::CONFLICT), ["site"], "{kind}");
        // Re-saving a config on its own site is fine.
        let r = app
            .put(&format!("{uri}/{}", first["id"]), json!({"site": "a"}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}
dual_test!(one_config_per_site);

async fn tftp_config_crud_and_validation(app: &TestApp) {
    let (a, _) = two_sites(app).await;
    let c = create(app, "/api/tftp-config", json!({"site": "a"})).await;
    let defaults = json!({
        "site": a, "site_name": "a", "enabled": true, "bind_address": "0.0.0.0",
        "bind_port": 69, "block_size": 1468, "max_windowsize": 64, "max_transfers": 256,
        "root_directory": "/srv/netboot",
    });
    for (k, v) in defaults.as_object().unwrap() {
        assert_eq!(&c[k], v, "{k}");
    }
    let id = c["id"].as_i64().unwrap();
    let uri = format!("/api/tftp-config/{id}");
    let r = app.patch(&uri, json!({"block_size": 8, "max_windowsize": 1, "max_transfers": 16_384, "root_directory": "/var/lib/tftpboot", "enabled": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["block_size"].as_i64(),
            r.body["max_transfers"].as_i64(),
            r.body["enabled"].as_bool()
        ),
        (Some(8), Some(16_384), Some(false))
    );
    assert_eq!(r.body["root_directory"], "/var/lib/tftpboot");
    let r = app
        .put(
            &uri,
            json!({"site": "b", "bind_port": 6969, "bind_address": "10.0.0.1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.body["site_name"].as_str(),
            r.body["bind_port"].as_i64(),
            r.body["block_size"].as_i64()
        ),
        (Some("b"), Some(6969), Some(1468))
    );
    assert_eq!(app.get("/api/tftp-config?site=a").await.body["count"], 0);
    assert_eq!(app.get(&uri).await.body["bind_address"], "10.0.0.1");

    let bad = |field: &str, value: Value| {
        let mut body = json!({"site": "b"});
        body[field] = value;
        (field.to_owned(), body)
    };
    for (field, body) in [
        bad("bind_address", json!("0.0.0")),
        bad("bind_port", json!(0)),
        bad("bind_port", json!(65_536)),
        bad("block_size", json!(7)),
        bad("block_size", json!(65_465)),
        bad("max_windowsize", json!(0)),
        bad("max_windowsize", json!(65)),
        bad("max_transfers", json!(0)),
        bad("max_transfers", json!(16_385)),
        bad("root_directory", json!("srv/netboot")),
        bad("root_directory", json!("/srv/../etc")),
        bad("root_directory", json!(["/srv"])),
        bad("enabled", json!("false")),
    ] {
        let r = app.patch(&uri, body.clone()).await;
        assert_eq!(
            fields(&r, StatusCode::BAD_REQUEST),
            std::slice::from_ref(&field),
            "{body}"
        );
    }
    let r = app
        .post(
            "/api/tftp-config",
            json!({"site": "a", "block_size": 65_464, "max_windowsize": 64, "bind_port": 65_535}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    assert_eq!(app.delete(&uri).await.status, StatusCode::NO_CONTENT);
    assert_problem(&app.delete(&uri).await, StatusCode::NOT_FOUND);
}
dual_test!(tftp_config_crud_and_validation);

async fn config_auth_and_not_found(app: &TestApp) {
    two_sites(app).await;
    for kind in ["dhcp-config", "tftp-config"] {
        let list = format!("/api/{kind}");
        let c = create(app, &list, json!({"site": "a"})).await;
        let one = format!("{list}/{}", c["id"]);
        for (method, uri) in [
            (Method::GET, &list),
            (Method::POST, &list),
            (Method::GET, &one),
            (Method::PATCH, &one),
            (Method::DELETE, &one),
        ] {
            let r = app
                .anonymous(method.clone(), uri, Some(json!({"site": "b"})))
                .await;
            assert_problem(&r, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            app.viewer(Method::GET, &one, None).await.status,
            StatusCode::OK
        );
        assert_eq!(app.viewer(Method::GET, &list, None).await.body["count"], 1);
        for (method, uri) in [
            (Method::POST, &list),
            (Method::PUT, &one),
            (Method::PATCH, &one),
            (Method::DELETE, &one),
        ] {
            let r = app
                .viewer(method.clone(), uri, Some(json!({"site": "b"})))
                .await;
            assert_problem(&r, StatusCode::FORBIDDEN);
        }
        let missing = format!("{list}/999999");
        assert_problem(&app.get(&missing).await, StatusCode::NOT_FOUND);
        assert_problem(
            &app.put(&missing, json!({"site": "b"})).await,
            StatusCode::NOT_FOUND,
        );
        assert_problem(&app.patch(&missing, json!({})).await, StatusCode::NOT_FOUND);
        assert_problem(&app.delete(&missing).await, StatusCode::NOT_FOUND);
        let r = app.get(&format!("{list}?site=nowhere")).await;
        assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["site"]);
        let r = app.get(&format!("{list}?page_size=10001")).await;
        assert_eq!(fields(&r, StatusCode::BAD_REQUEST), ["page_size"]);
    }
}
dual_test!(config_auth_and_not_found);
