//! OAuth2 client credentials for the O2ims API: `POST /oauth/token` (HTTP Basic and form
//! authentication, every RFC 6749 §5.2 error, throttling), the scopes of each O2ims route class
//! for clients and users, and client tokens refused by the REST API under `/api`.

// Test helpers may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use ims_control::auth::clients;
use ims_control::auth::password;
use ims_control::auth::scope::{Caller, Scope, ScopeAlarms, ScopeRead, ScopeSubscribe};
use serde_json::json;
use support::{Resp, TestApp, assert_problem};

const V1: &str = "/o2ims-infrastructureInventory/v1";

/// Creates a client with `scopes`; returns its secret.
async fn add_client(app: &TestApp, id: &str, scopes: &[Scope]) -> String {
    let secret = clients::generate_secret();
    let hash = password::hash_password(&secret).unwrap();
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    clients::create(&mut conn, id, &hash, scopes, "test client")
        .await
        .unwrap();
    secret
}

async fn token_request(app: &TestApp, basic: Option<(&str, &str)>, form: &str) -> Resp {
    let mut b = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        b = b.header(header::AUTHORIZATION, format!("Basic {enc}"));
    }
    app.send(b.body(Body::from(form.to_owned())).unwrap()).await
}

/// A token for client `id` with all its scopes.
async fn client_token(app: &TestApp, id: &str, secret: &str) -> String {
    let r = token_request(app, Some((id, secret)), "grant_type=client_credentials").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_owned()
}

fn assert_oauth_error(r: &Resp, status: StatusCode, error: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"], error, "{}", r.body);
    assert!(
        r.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    if status == StatusCode::UNAUTHORIZED {
        assert!(
            r.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
    }
}

async fn grant_happy_paths(app: &TestApp) {
    let secret = add_client(app, "focom", &[Scope::Read, Scope::Subscribe]).await;
    // HTTP Basic, all granted scopes.
    let r = token_request(
        app,
        Some(("focom", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["scope"], "o2ims:read o2ims:subscribe");
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let pools = app
        .call(
            Method::GET,
            &format!("{V1}/resourcePools"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(pools.status, StatusCode::OK, "{}", pools.body);
    // Form fields, a subset of the scopes, the id in another case.
    let form = format!(
        "grant_type=client_credentials&client_id=FOCOM&client_secret={secret}&scope=o2ims%3Aread"
    );
    let r = token_request(app, None, &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["scope"], "o2ims:read");
    let read_only = r.body["access_token"].as_str().unwrap().to_owned();
    let sub = app
        .call(
            Method::POST,
            &format!("{V1}/subscriptions"),
            Some(&read_only),
            Some(json!({"callback": "http://127.0.0.1:9/cb"})),
        )
        .await;
    assert_problem(&sub, StatusCode::FORBIDDEN);
    assert!(
        sub.body["detail"]
            .as_str()
            .unwrap()
            .contains("o2ims:subscribe"),
        "{}",
        sub.body
    );
}
dual_test!(grant_happy_paths);

async fn grant_errors(app: &TestApp) {
    let secret = add_client(app, "focom", &[Scope::Read]).await;
    let ok = "grant_type=client_credentials";
    let r = token_request(app, Some(("focom", "wrong")), ok).await;
    assert_oauth_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    let wrong_desc = r.body["error_description"].clone();
    let r = token_request(app, Some(("nobody", &secret)), ok).await;
    assert_oauth_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(r.body["error_description"], wrong_desc, "same answer");
    let r = token_request(app, None, ok).await;
    assert_oauth_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    let both = format!("{ok}&client_id=focom&client_secret={secret}");
    let r = token_request(app, Some(("focom", &secret)), &both).await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = token_request(app, Some(("focom", &secret)), "scope=o2ims%3Aread").await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = token_request(app, Some(("focom", &secret)), &format!("{ok}&{ok}")).await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = token_request(app, Some(("focom", &secret)), "grant_type=password").await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let r = token_request(
        app,
        Some(("focom", &secret)),
        &format!("{ok}&scope=o2ims%3Aalarms"),
    )
    .await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("o2ims:alarms")
    );
    let r = token_request(app, Some(("focom", &secret)), &format!("{ok}&scope=admin")).await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_scope");
    // A JSON body is not a token request.
    let r = app
        .send(
            Request::post("/oauth/token")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
                .unwrap(),
        )
        .await;
    assert_oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
}
dual_test!(grant_errors);

async fn failed_client_authentications_are_throttled(app: &TestApp) {
    let secret = add_client(app, "focom", &[Scope::Read]).await;
    for _ in 0..5 {
        let r = token_request(
            app,
            Some(("focom", "wrong")),
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = token_request(
        app,
        Some(("focom", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Another client is not affected.
    let other = add_client(app, "other", &[Scope::Read]).await;
    client_token(app, "other", &other).await;
}
dual_test!(failed_client_authentications_are_throttled);

async fn scopes_on_each_route_class(app: &TestApp) {
    let reader = add_client(app, "reader", &[Scope::Read]).await;
    let subscriber = add_client(app, "subscriber", &[Scope::Subscribe]).await;
    let reader = client_token(app, "reader", &reader).await;
    let subscriber = client_token(app, "subscriber", &subscriber).await;
    let reads = [
        V1.to_owned(),
        format!("{V1}/api_versions"),
        "/o2ims-infrastructureInventory/api_versions".to_owned(),
        format!("{V1}/resourceTypes"),
        format!("{V1}/resourcePools"),
        format!("{V1}/deploymentManagers"),
        format!("{V1}/locations"),
        format!("{V1}/oCloudSites"),
        format!("{V1}/subscriptions"),
    ];
    for uri in &reads {
        let r = app.call(Method::GET, uri, Some(&reader), None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        let r = app.call(Method::GET, uri, Some(&subscriber), None).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
        assert!(r.body["detail"].as_str().unwrap().contains("o2ims:read"));
        let r = app.viewer(Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "viewer {uri}: {}", r.body);
        let r = app.anonymous(Method::GET, uri, None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let body = json!({"callback": "http://127.0.0.1:9/cb"});
    let subs = format!("{V1}/subscriptions");
    let r = app
        .call(Method::POST, &subs, Some(&reader), Some(body.clone()))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app.viewer(Method::POST, &subs, Some(body.clone())).await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app
        .call(Method::POST, &subs, Some(&subscriber), Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let one = format!("{subs}/{}", r.body["subscriptionId"].as_str().unwrap());
    let r = app.call(Method::DELETE, &one, Some(&reader), None).await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app
        .call(Method::DELETE, &one, Some(&subscriber), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // An admin holds every scope.
    let r = app.post(&subs, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
dual_test!(scopes_on_each_route_class);

async fn client_tokens_are_refused_by_the_rest_api(app: &TestApp) {
    let secret = add_client(
        app,
        "focom",
        &[Scope::Read, Scope::Subscribe, Scope::Alarms],
    )
    .await;
    let token = client_token(app, "focom", &secret).await;
    for uri in ["/api/sites", "/api/users/me", "/api/openapi.json"] {
        let r = app.call(Method::GET, uri, Some(&token), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("client token") && detail.contains("/api/token"),
            "{detail}"
        );
    }
    let r = app
        .call(
            Method::POST,
            "/api/sites",
            Some(&token),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    // Nor can it buy user tokens.
    let r = app
        .call(
            Method::POST,
            "/api/token/refresh",
            None,
            Some(json!({"refresh": token})),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
}
dual_test!(client_tokens_are_refused_by_the_rest_api);

/// The scope extractors the alarm routes use, on client and user tokens.
async fn scope_extractors(app: &TestApp) {
    let alarms = add_client(app, "alarms", &[Scope::Read, Scope::Alarms]).await;
    let alarms = client_token(app, "alarms", &alarms).await;
    let reader = add_client(app, "reader", &[Scope::Read]).await;
    let reader = client_token(app, "reader", &reader).await;
    let parts = |token: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let state = app.state.clone();
    let ScopeAlarms(caller) = ScopeAlarms::from_request_parts(&mut parts(&alarms), &state)
        .await
        .unwrap();
    assert_eq!(
        caller,
        Caller::Client {
            client_id: "alarms".into(),
            scopes: vec![Scope::Read, Scope::Alarms]
        }
    );
    assert!(
        ScopeSubscribe::from_request_parts(&mut parts(&alarms), &state)
            .await
            .is_err()
    );
    assert!(
        ScopeAlarms::from_request_parts(&mut parts(&reader), &state)
            .await
            .is_err()
    );
    assert!(
        ScopeRead::from_request_parts(&mut parts(&reader), &state)
            .await
            .is_ok()
    );
    assert!(
        ScopeAlarms::from_request_parts(&mut parts(&app.admin_token), &state)
            .await
            .is_ok()
    );
    assert!(
        ScopeAlarms::from_request_parts(&mut parts(&app.viewer_token), &state)
            .await
            .is_err()
    );
}
dual_test!(scope_extractors);

/// The monitoring routes: reads need `o2ims:read`, alarm subscriptions `o2ims:subscribe`,
/// alarm management `o2ims:alarms`.
async fn alarm_route_scopes(app: &TestApp) {
    const MON: &str = "/o2ims-infrastructureMonitoring/v1";
    let reader = add_client(app, "reader", &[Scope::Read]).await;
    let reader = client_token(app, "reader", &reader).await;
    let subscriber = add_client(app, "subscriber", &[Scope::Subscribe]).await;
    let subscriber = client_token(app, "subscriber", &subscriber).await;
    let manager = add_client(app, "manager", &[Scope::Alarms]).await;
    let manager = client_token(app, "manager", &manager).await;
    let call = |method: Method, uri: String, token: String, body: Option<serde_json::Value>| async move {
        app.call(method, &uri, Some(&token), body).await
    };
    for uri in ["alarms", "alarmSubscriptions", "alarmServiceConfiguration"] {
        let uri = format!("{MON}/{uri}");
        let r = call(Method::GET, uri.clone(), reader.clone(), None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        let r = call(Method::GET, uri.clone(), manager.clone(), None).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
    }
    let sub = json!({"callback": "https://smo.example/alarms"});
    let subs = format!("{MON}/alarmSubscriptions");
    let r = call(
        Method::POST,
        subs.clone(),
        reader.clone(),
        Some(sub.clone()),
    )
    .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = call(Method::POST, subs, subscriber.clone(), Some(sub)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let config = format!("{MON}/alarmServiceConfiguration");
    let change = json!({"retentionPeriod": 20});
    for token in [&reader, &subscriber] {
        let r = call(
            Method::PATCH,
            config.clone(),
            token.clone(),
            Some(change.clone()),
        )
        .await;
        assert_problem(&r, StatusCode::FORBIDDEN);
        assert!(r.body["detail"].as_str().unwrap().contains("o2ims:alarms"));
    }
    let r = call(Method::PATCH, config, manager.clone(), Some(change)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["retentionPeriod"], 20);
}
dual_test!(alarm_route_scopes);
