//! Authentication, users and operations endpoints on both backends: login and refresh, token
//! kinds, expiry and tampering, login throttling, user CRUD with validation and roles, the
//! last-admin rule, `/healthz`, `/readyz` and `/metrics`.
// The scenario functions run under `dual_test!`, outside `#[test]` items.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode, header};
use ims_control::auth::{AuthUser, Claims, TokenKind};
use ims_control::db::now_ms;
use ims_control::model::UserRole;
use serde_json::{Value, json};
use support::{Resp, TestApp, assert_problem};

async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    app.anonymous(
        Method::POST,
        "/api/token/",
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> Resp {
    app.call(Method::GET, "/api/users/me", Some(token), None)
        .await
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

async fn login_works_and_failures_look_alike(app: &TestApp) {
    let r = login(app, "admin", "admin-pass").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access = str_of(&r.body, "access").to_owned();
    let refresh = str_of(&r.body, "refresh").to_owned();
    assert_ne!(access, refresh);
    let r = me(app, &access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["username"], "admin");
    assert_eq!(r.body["role"], "admin");

    // Usernames match case-insensitively.
    assert_eq!(
        login(app, "ADMIN", "admin-pass").await.status,
        StatusCode::OK
    );

    let wrong = login(app, "admin", "admin-pasS").await;
    assert_problem(&wrong, StatusCode::UNAUTHORIZED);
    let unknown = login(app, "nobody", "admin-pass").await;
    assert_problem(&unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body, unknown.body,
        "unknown user and wrong password differ"
    );
    assert_eq!(
        wrong
            .headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );

    // Malformed bodies are 400, not 401.
    let r = app
        .anonymous(
            Method::POST,
            "/api/token",
            Some(json!({"username": "admin"})),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .anonymous(
            Method::POST,
            "/api/token",
            Some(json!({"username": "admin", "password": "admin-pass", "otp": 1})),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
}
dual_test!(login_works_and_failures_look_alike);

async fn refresh_and_token_kinds(app: &TestApp) {
    let r = login(app, "viewer", "viewer-pass").await;
    let access = str_of(&r.body, "access").to_owned();
    let refresh = str_of(&r.body, "refresh").to_owned();

    let r = app
        .anonymous(
            Method::POST,
            "/api/token/refresh/",
            Some(json!({ "refresh": refresh })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new_access = str_of(&r.body, "access").to_owned();
    assert!(r.body.get("refresh").is_none());
    assert_eq!(me(app, &new_access).await.body["username"], "viewer");

    // A refresh token is not an access token, and the reverse.
    let r = me(app, &refresh).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("access"), "{}", r.body);
    let r = app
        .anonymous(
            Method::POST,
            "/api/token/refresh",
            Some(json!({ "refresh": access })),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("refresh"), "{}", r.body);

    // A role change applies to the next refreshed access token.
    let viewer_id = me(app, &access).await.body["id"].as_i64().unwrap();
    let r = app
        .call(
            Method::POST,
            "/api/users",
            Some(&new_access),
            Some(json!({"username": "x1", "password": "12345678", "role": "viewer"})),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app
        .patch(&format!("/api/users/{viewer_id}"), json!({"role": "ADMIN"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .anonymous(
            Method::POST,
            "/api/token/refresh",
            Some(json!({ "refresh": refresh })),
        )
        .await;
    let promoted = str_of(&r.body, "access").to_owned();
    let r = app
        .call(
            Method::POST,
            "/api/users",
            Some(&promoted),
            Some(json!({"username": "x1", "password": "12345678", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // A deleted user cannot refresh.
    let r = app.delete(&format!("/api/users/{viewer_id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app
        .anonymous(
            Method::POST,
            "/api/token/refresh",
            Some(json!({ "refresh": refresh })),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("no longer exists"));
}
dual_test!(refresh_and_token_kinds);

async fn expired_tampered_and_missing_tokens(app: &TestApp) {
    let admin = me(app, &app.admin_token).await.body;
    let user = AuthUser {
        user_id: admin["id"].as_i64().unwrap(),
        username: "admin".into(),
        role: UserRole::Admin,
    };
    let two_hours_ago = now_ms() - 2 * 3600 * 1000;
    let expired =
        app.state
            .auth
            .keys
            .issue(&Claims::new(&user, TokenKind::Access, two_hours_ago, 60));
    let r = me(app, &expired).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("expired"), "{}", r.body);

    let expired_refresh =
        app.state
            .auth
            .keys
            .issue(&Claims::new(&user, TokenKind::Refresh, two_hours_ago, 60));
    let r = app
        .anonymous(
            Method::POST,
            "/api/token/refresh",
            Some(json!({ "refresh": expired_refresh })),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("expired"), "{}", r.body);

    // Change one character of the payload: the signature no longer matches.
    let mut parts: Vec<String> = app.admin_token.split('.').map(str::to_owned).collect();
    let payload = &mut parts[1];
    let last = payload.pop().unwrap();
    payload.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = parts.join(".");
    let r = me(app, &tampered).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(
        str_of(&r.body, "detail").contains("invalid token"),
        "{}",
        r.body
    );
    assert_problem(&me(app, "not-a-jwt").await, StatusCode::UNAUTHORIZED);

    let r = app.anonymous(Method::GET, "/api/users/me", None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(str_of(&r.body, "detail").contains("Bearer"));
}
dual_test!(expired_tampered_and_missing_tokens);

async fn failed_logins_are_throttled(app: &TestApp) {
    // A success clears the username's failures.
    for _ in 0..4 {
        assert_eq!(
            login(app, "viewer", "wrong-pass").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(app, "viewer", "viewer-pass").await.status,
        StatusCode::OK
    );
    for _ in 0..4 {
        assert_eq!(
            login(app, "viewer", "wrong-pass").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(app, "viewer", "viewer-pass").await.status,
        StatusCode::OK
    );

    // Five failures in a row lock the username, even for the right password.
    for _ in 0..5 {
        assert_problem(
            &login(app, "admin", "wrong-pass").await,
            StatusCode::UNAUTHORIZED,
        );
    }
    for password in ["wrong-pass", "admin-pass"] {
        let r = login(app, "Admin", password).await;
        assert_problem(&r, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After seconds");
        assert!((1..=300).contains(&retry), "{retry}");
        assert!(
            str_of(&r.body, "detail").contains("try again"),
            "{}",
            r.body
        );
    }
    // Unknown usernames are throttled the same way (no hint whether they exist).
    for _ in 0..5 {
        login(app, "ghost", "x").await;
    }
    assert_problem(
        &login(app, "ghost", "x").await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    // Other users are not affected.
    assert_eq!(
        login(app, "viewer", "viewer-pass").await.status,
        StatusCode::OK
    );
}
dual_test!(failed_logins_are_throttled);

async fn users_crud(app: &TestApp) {
    let r = app
        .post(
            "/api/users/",
            json!({"username": "bob.ops+1@example.net", "password": "bob-secret", "role": "Viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "id", "role", "updated_at", "username"],
        "no password or hash is ever sent"
    );
    assert_eq!(r.body["role"], "viewer");
    assert!(str_of(&r.body, "created_at").ends_with('Z'));

    let r = app.get(&format!("/api/users/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["username"], "bob.ops+1@example.net");
    assert_eq!(
        login(app, "bob.ops+1@example.net", "bob-secret")
            .await
            .status,
        StatusCode::OK
    );

    // List, pages and the role filter.
    let r = app.get("/api/users").await;
    assert_eq!(r.body["count"], 3);
    let names: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "viewer", "bob.ops+1@example.net"]);
    assert!(!r.body.to_string().contains("argon2"));
    let r = app.get("/api/users?page=2&page_size=2").await;
    assert_eq!(r.body["count"], 3);
    assert_eq!(r.body["page"], 2);
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["results"][0]["id"], id);
    let r = app.get("/api/users?role=viewer").await;
    assert_eq!(r.body["count"], 2);
    let r = app.get("/api/users?role=boss&page=0").await;
    let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
    let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["page", "role"]);

    // Change the role and the password.
    let r = app
        .patch(
            &format!("/api/users/{id}"),
            json!({"role": "admin", "password": "new-secret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "admin");
    assert_eq!(
        login(app, "bob.ops+1@example.net", "bob-secret")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(app, "bob.ops+1@example.net", "new-secret")
            .await
            .status,
        StatusCode::OK
    );
    let r = app.patch(&format!("/api/users/{id}"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["role"], "admin");

    // Conflicts and validation.
    let r = app
        .post(
            "/api/users",
            json!({"username": "BOB.ops+1@example.net", "password": "12345678", "role": "viewer"}),
        )
        .await;
    let fields = assert_problem(&r, StatusCode::CONFLICT);
    assert_eq!(fields[0].0, "username");
    let r = app
        .post(
            "/api/users",
            json!({"username": "bad name!", "password": "short", "role": "root"}),
        )
        .await;
    let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
    let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["username", "password", "role"]);
    assert!(fields[1].1.contains("at least 8"), "{fields:?}");
    assert!(fields[2].1.contains("admin, viewer"), "{fields:?}");
    let r = app.post("/api/users", json!({})).await;
    let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(fields.len(), 3);
    let r = app
        .post(
            "/api/users",
            json!({"username": "a".repeat(151), "password": 12_345_678, "role": 1}),
        )
        .await;
    let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(fields.len(), 3, "{fields:?}");
    let r = app
        .patch(&format!("/api/users/{id}"), json!({"username": "renamed"}))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .patch(
            &format!("/api/users/{id}"),
            json!({"password": "1234567", "role": null}),
        )
        .await;
    let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
    let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["password", "role"]);

    // Delete, then it is gone.
    let r = app.delete(&format!("/api/users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &app.get(&format!("/api/users/{id}")).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &app.delete(&format!("/api/users/{id}")).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &app.patch(&format!("/api/users/{id}"), json!({"role": "viewer"}))
            .await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(&app.get("/api/users/abc").await, StatusCode::NOT_FOUND);
    assert_eq!(
        login(app, "bob.ops+1@example.net", "new-secret")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
dual_test!(users_crud);

async fn viewers_and_strangers_are_refused(app: &TestApp) {
    let admin_id = me(app, &app.admin_token).await.body["id"].as_i64().unwrap();
    let body = json!({"username": "eve", "password": "12345678", "role": "admin"});
    for (method, uri, body) in [
        (Method::GET, "/api/users".to_owned(), None),
        (Method::POST, "/api/users".to_owned(), Some(body.clone())),
        (Method::GET, format!("/api/users/{admin_id}"), None),
        (
            Method::PATCH,
            format!("/api/users/{admin_id}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/api/users/{admin_id}"), None),
    ] {
        let r = app.viewer(method.clone(), &uri, body.clone()).await;
        let detail = assert_problem(&r, StatusCode::FORBIDDEN);
        assert!(detail.is_empty());
        assert!(str_of(&r.body, "detail").contains("viewer"), "{}", r.body);
        let r = app.anonymous(method, &uri, body).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let r = me(app, &app.viewer_token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["username"], "viewer");
    assert_eq!(r.body["role"], "viewer");
    // Nothing changed.
    assert_eq!(app.get("/api/users").await.body["count"], 2);
}
dual_test!(viewers_and_strangers_are_refused);

async fn the_last_admin_stays(app: &TestApp) {
    let admin_id = me(app, &app.admin_token).await.body["id"].as_i64().unwrap();
    let r = app
        .patch(&format!("/api/users/{admin_id}"), json!({"role": "viewer"}))
        .await;
    let fields = assert_problem(&r, StatusCode::CONFLICT);
    assert_eq!(fields[0].0, "role");
    assert!(fields[0].1.contains("last admin"), "{fields:?}");
    let r = app.delete(&format!("/api/users/{admin_id}")).await;
    let fields = assert_problem(&r, StatusCode::CONFLICT);
    assert!(str_of(&r.body, "detail").contains("last admin"));
    assert_eq!(fields[0].0, "role");
    // A password change of the last admin is fine.
    let r = app
        .patch(
            &format!("/api/users/{admin_id}"),
            json!({"password": "changed-pass"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // With a second admin, the first may go; then the second is the last.
    let r = app
        .post(
            "/api/users",
            json!({"username": "root2", "password": "12345678", "role": "admin"}),
        )
        .await;
    let second = r.body["id"].as_i64().unwrap();
    let r = app
        .patch(&format!("/api/users/{admin_id}"), json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.delete(&format!("/api/users/{admin_id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = login(app, "root2", "12345678").await;
    let token = str_of(&r.body, "access").to_owned();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/users/{second}"),
            Some(&token),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::CONFLICT);
    assert_eq!(app.get("/api/users?role=admin").await.body["count"], 1);
}
dual_test!(the_last_admin_stays);

async fn health_readiness_and_metrics(app: &TestApp) {
    let r = app.anonymous(Method::GET, "/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ok");
    let r = app.anonymous(Method::GET, "/readyz/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ready");

    app.get("/api/users/1").await;
    app.get("/api/users/2").await;
    app.get("/api/no-such-route").await;
    login(app, "admin", "wrong-pass").await;
    let r = app.anonymous(Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("application/openmetrics-text"));
    let text = r.body.as_str().expect("text");
    for needle in [
        r#"ims_control_http_requests_total{method="GET",route="/api/users/{id}",status="200"} 2"#,
        r#"ims_control_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"ims_control_http_requests_total{method="POST",route="/api/token",status="401"} 1"#,
        r#"ims_control_http_requests_total{method="GET",route="/healthz",status="200"} 1"#,
        r#"ims_control_http_requests_total{method="GET",route="/readyz",status="200"} 1"#,
        r#"ims_control_http_request_duration_seconds_count{method="GET",route="/api/users/{id}"} 2"#,
        "ims_control_db_pool_connections ",
        "ims_control_db_pool_idle ",
        "ims_control_build_info{version=\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // A scrape is counted after it is rendered.
    assert!(!text.contains("route=\"/metrics\""), "{text}");

    // The documented operations include these routes.
    let doc = app.get("/api/openapi.json").await.body;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/token",
        "/api/token/refresh",
        "/api/users",
        "/api/users/me",
        "/api/users/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }

    // With the store gone, the app is alive but not ready.
    app.state.db.close().await;
    let r = app.anonymous(Method::GET, "/readyz", None).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.anonymous(Method::GET, "/healthz", None).await.status,
        StatusCode::OK
    );
}
dual_test!(health_readiness_and_metrics);
