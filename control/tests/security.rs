//! Control-plane hardening on both backends: security headers on every response, the request
//! body limit (413 problem), bad refresh tokens throttled per address, and signing-key
//! rotation (old tokens keep working, new tokens carry the new kid, a pruned key's tokens are
//! refused, another replica picks the new key up).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use ims_control::auth::rotation::{self, KeyRing};
use ims_control::auth::{AuthSettings, AuthUser, Claims, Keys, TokenKind};
use ims_control::db::now_ms;
use ims_control::model::UserRole;
use ims_control::security::{CONTENT_SECURITY_POLICY, DEFAULT_BODY_LIMIT, SECURITY_HEADERS};
use ims_control::state::AppState;
use serde_json::json;
use support::{TestApp, assert_problem};

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn security_headers_on_every_response(app: &TestApp) {
    let probes = [
        (Method::GET, "/", None),
        (Method::GET, "/api/cluster", Some(app.admin_token.as_str())),
        (Method::GET, "/api/cluster", None),
        (Method::GET, "/api/no-such-route", None),
        (Method::DELETE, "/api/token", None),
        (Method::GET, "/healthz", None),
        (
            Method::GET,
            "/api/openapi.json",
            Some(app.admin_token.as_str()),
        ),
    ];
    for (method, uri, token) in probes {
        let r = app.call(method.clone(), uri, token, None).await;
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(
                r.headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name} on {method} {uri} ({})",
                r.status
            );
        }
        // Plain HTTP in-process: no HSTS.
        assert!(r.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none());
    }
    assert_eq!(
        CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
}
dual_test!(security_headers_on_every_response);

async fn an_over_large_body_is_refused_with_413(app: &TestApp) {
    // A JSON body just over the limit: the hostname alone is 1 MiB.
    let big = "a".repeat(DEFAULT_BODY_LIMIT);
    let r = app
        .post(
            "/api/machines",
            json!({"hostname": big, "mac": "52:54:00:00:00:01"}),
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("1024 KiB"), "{detail}");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    // The same route still takes a normal body (validation, not a size problem).
    let r = app.post("/api/machines", json!({"hostname": "ok"})).await;
    assert_ne!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A login body is limited too.
    let r = app
        .anonymous(
            Method::POST,
            "/api/token",
            Some(json!({"username": "admin", "password": "x".repeat(DEFAULT_BODY_LIMIT)})),
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
}
dual_test!(an_over_large_body_is_refused_with_413);

async fn bad_refresh_tokens_are_throttled_per_address(app: &TestApp) {
    let refresh = |from: [u8; 4], token: &str| {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/token/refresh/")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(ConnectInfo(SocketAddr::from((from, 40000))))
            .body(Body::from(json!({"refresh": token}).to_string()))
            .unwrap();
        app.send(request)
    };
    for _ in 0..20 {
        let r = refresh([192, 0, 2, 7], "not-a-token").await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let r = refresh([192, 0, 2, 7], "not-a-token").await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Another address is served; a valid refresh token from it works.
    let user = AuthUser {
        user_id: 1,
        username: "admin".into(),
        role: UserRole::Admin,
    };
    let good = app
        .state
        .auth
        .keys
        .issue(&Claims::new(&user, TokenKind::Refresh, now_ms(), 600));
    let r = refresh([192, 0, 2, 8], &good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Password guessing from the blocked address is refused too (shared address counter).
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/token")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40001))))
        .body(Body::from(
            json!({"username": "admin", "password": "admin-pass"}).to_string(),
        ))
        .unwrap();
    assert_problem(&app.send(request).await, StatusCode::TOO_MANY_REQUESTS);
}
dual_test!(bad_refresh_tokens_are_throttled_per_address);

async fn rotation_keeps_old_tokens_until_they_expire(app: &TestApp) {
    let db = &app.state.db;
    let settings = AuthSettings {
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
    };
    let grace = rotation::grace(&settings);
    let user = AuthUser {
        user_id: 1,
        username: "admin".into(),
        role: UserRole::Admin,
    };
    let old_kid = kid_of(&app.admin_token);
    let old_refresh =
        app.state
            .auth
            .keys
            .issue(&Claims::new(&user, TokenKind::Refresh, now_ms(), 600));
    // A token that outlives the grace (only possible with a longer TTL than configured): it
    // shows that pruning, not expiry, is what refuses it later.
    let long_lived =
        app.state
            .auth
            .keys
            .issue(&Claims::new(&user, TokenKind::Access, now_ms(), 100_000));

    // A second replica on the same store, still holding only the old key.
    let replica = AppState::new(db.clone(), settings).await.unwrap();
    assert_eq!(replica.auth.keys.current().kids(), [old_kid.as_str()]);

    let t0 = now_ms();
    let r = rotation::rotate(db, t0, grace).await.unwrap();
    assert_ne!(r.current, old_kid);
    assert_eq!(r.kept, [r.current.clone(), old_kid.clone()]);
    assert!(r.pruned.is_empty());

    // The first replica reloads (its periodic task) and signs with the new key.
    app.state.auth.keys.reload(db).await.unwrap();
    assert_eq!(
        app.state.auth.keys.current().kids(),
        [r.current.as_str(), old_kid.as_str()]
    );
    let r2 = app
        .anonymous(
            Method::POST,
            "/api/token",
            Some(json!({"username": "admin", "password": "admin-pass"})),
        )
        .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    let new_access = r2.body["access"].as_str().unwrap().to_owned();
    assert_eq!(
        kid_of(&new_access),
        r.current,
        "new tokens carry the new kid"
    );
    // Old tokens still work after the rotation: access and refresh.
    let me = app
        .call(Method::GET, "/api/users/me", Some(&app.admin_token), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let refreshed = app
        .anonymous(
            Method::POST,
            "/api/token/refresh",
            Some(json!({"refresh": old_refresh})),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(
        kid_of(refreshed.body["access"].as_str().unwrap()),
        r.current
    );

    // The other replica has not reloaded yet, but a token with the unknown kid makes it.
    assert_eq!(
        replica
            .auth
            .keys
            .verify_or_reload(db, &new_access, TokenKind::Access)
            .await
            .map(|c| c.name),
        Ok("admin".to_owned())
    );
    assert_eq!(replica.auth.keys.current().kids().len(), 2);

    // Just before the grace ends nothing is pruned; at its end the old key goes.
    let grace_ms = i64::try_from(grace.as_millis()).unwrap();
    let p = rotation::prune(db, t0 + grace_ms - 1, grace).await.unwrap();
    assert!(p.pruned.is_empty(), "{p:?}");
    let p = rotation::prune(db, t0 + grace_ms, grace).await.unwrap();
    assert_eq!(p.pruned, [old_kid.as_str()]);
    assert_eq!(p.kept, [r.current.as_str()]);
    app.state.auth.keys.reload(db).await.unwrap();
    let refused = app
        .call(Method::GET, "/api/users/me", Some(&long_lived), None)
        .await;
    assert_problem(&refused, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("invalid token"),
        "{}",
        refused.body
    );
    let ok = app
        .call(Method::GET, "/api/users/me", Some(&new_access), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    // A ring built from the stored keys agrees.
    let fresh = KeyRing::new(Keys::load_or_create(db).await.unwrap());
    assert_eq!(fresh.current().kids(), [r.current.as_str()]);
}
dual_test!(rotation_keeps_old_tokens_until_they_expire);

async fn automatic_rotation_rotates_once_when_due(app: &TestApp) {
    let db = &app.state.db;
    let grace = Duration::from_secs(3600);
    let period = Duration::from_secs(30 * 86_400);
    let first = Keys::load_or_create(db).await.unwrap().kids()[0].to_owned();
    let t0 = now_ms();
    // Young key: nothing happens.
    assert_eq!(
        rotation::rotate_if_due(db, t0, period, grace)
            .await
            .unwrap(),
        None
    );
    // Once due, one rotation; a second replica asking at the same moment finds a young key.
    let later = t0 + 31 * 86_400_000;
    let r = rotation::rotate_if_due(db, later, period, grace)
        .await
        .unwrap()
        .expect("rotated");
    assert_ne!(r.current, first);
    // The old key's successor is a day old only relative to `later`: pruned at later + grace.
    assert_eq!(r.kept, [r.current.as_str(), first.as_str()]);
    assert_eq!(
        rotation::rotate_if_due(db, later, period, grace)
            .await
            .unwrap(),
        None
    );
    let p = rotation::prune(db, later + 3_600_000, grace).await.unwrap();
    assert_eq!(p.pruned, [first.as_str()]);
}
dual_test!(automatic_rotation_rotates_once_when_due);

#[test]
fn key_rotation_setting() {
    use ims_control::config::{ConfigSources, RawConfig, parse_file};
    let path = std::path::PathBuf::from("/etc/ims-control.toml");
    let serve = |text: &str| {
        let raw = parse_file(text, &path).unwrap();
        ConfigSources::new(Some((path.clone(), raw)), RawConfig::default()).serve()
    };
    assert_eq!(serve("").unwrap().key_rotation, None);
    assert_eq!(serve("key_rotation = \"off\"").unwrap().key_rotation, None);
    assert_eq!(
        serve("key_rotation = \"30days\"").unwrap().key_rotation,
        Some(Duration::from_secs(30 * 86_400))
    );
    let e = serve("key_rotation = \"10m\"").unwrap_err().to_string();
    assert!(
        e.contains("key_rotation") && e.contains("at least 1h"),
        "{e}"
    );
    let e = serve("key_rotation = \"soon\"").unwrap_err().to_string();
    assert!(e.contains("is not a duration"), "{e}");
}
